"""Quantizers for Keras 3: each a small serializable layer with a custom gradient.

`core` holds the forward/backward frame, BiPer and the ProxConnect++ family; `larq_family`
the rest of Larq's quantizers. Look-ups go through `get`, which accepts an alias (Larq's:
`"ste_sign"`, `"approx_sign"`, `"swish_sign"`, `"magnitude_aware_sign"`,
`"ste_heaviside"`, `"ste_tern"`, `"dorefa_quantizer"`; ours: `"biper"`, `"bc"`, `"bnn"`,
`"bnn_plus"`, `"bnn_pp"`), a class name, a serialized config dict, an instance or a
callable.
"""

import keras

from biper_keras.quantizers.core import (
    DEFAULT_OMEGA,
    BNN,
    ApproxSign,
    BinaryConnect,
    BiPer,
    BNNPlus,
    BNNPlusPlus,
    ForwardBackwardQuantizer,
    Quantizer,
    SteSign,
    binary_sign,
    check_metrics,  # noqa: F401  (a validator the package uses, not API)
    check_positive_number,  # noqa: F401  (same)
    sign_swish,
    sign_swish_derivative,
    ste_gradient,
    with_gradient,
)
from biper_keras.quantizers.larq_family import (
    DoReFa,
    DoReFaQuantizer,
    MagnitudeAwareSign,
    NoOp,
    NoOpQuantizer,
    SteHeaviside,
    SteTern,
    SwishSign,
)

__all__ = [
    "DEFAULT_OMEGA",
    "Quantizer",
    "ForwardBackwardQuantizer",
    "BiPer",
    "SteSign",
    "ApproxSign",
    "SwishSign",
    "MagnitudeAwareSign",
    "SteHeaviside",
    "SteTern",
    "DoReFa",
    "DoReFaQuantizer",
    "NoOp",
    "NoOpQuantizer",
    "BinaryConnect",
    "BNN",
    "BNNPlus",
    "BNNPlusPlus",
    "binary_sign",
    "with_gradient",
    "ste_gradient",
    "sign_swish",
    "sign_swish_derivative",
    "get",
    "serialize",
    "deserialize",
    "register",
    "ALIASES",
]

# Aliases, Larq style (Larq's names compute what Larq computes). Class names (e.g.
# "BiPer") are accepted too.
ALIASES = {
    "biper": BiPer,
    "ste_sign": SteSign,
    "approx_sign": ApproxSign,
    "bc": BinaryConnect,
    "bnn": BNN,
    "bnn_plus": BNNPlus,
    "bnn_pp": BNNPlusPlus,
    "swish_sign": SwishSign,
    "magnitude_aware_sign": MagnitudeAwareSign,
    "ste_heaviside": SteHeaviside,
    "ste_tern": SteTern,
    "dorefa_quantizer": DoReFa,
}

# Classes reachable by class name only (NoOp has no Larq alias: it needs `precision`).
_BY_CLASS_NAME_ONLY = (NoOp,)


def register(alias, cls):
    """Makes `get(alias)` return `cls()`. `cls` must be a Keras-serializable Quantizer."""
    if not (isinstance(cls, type) and issubclass(cls, Quantizer)):
        raise TypeError(f"`cls` must be a Quantizer subclass. Received: {cls!r}.")
    ALIASES[alias] = cls
    return cls


def _classes():
    return {c.__name__: c for c in (*ALIASES.values(), *_BY_CLASS_NAME_ONLY)}


def _known_names():
    return sorted(set(ALIASES) | set(_classes()))


def serialize(quantizer):
    """A quantizer's Keras config (a dict), as `deserialize` reads it back."""
    return keras.saving.serialize_keras_object(quantizer)


def deserialize(config, custom_objects=None):
    """A quantizer from its Keras config, a registered name or a Larq alias
    (`custom_objects` may add more)."""
    objects = _classes()
    objects.update(ALIASES)
    objects.update(custom_objects or {})
    return keras.saving.deserialize_keras_object(config, custom_objects=objects)


def get(identifier):
    """Returns a quantizer for `identifier`.

    Args:
        identifier: None; an alias (`"biper"`, `"ste_sign"`, `"approx_sign"`, or any
            added with `register`) or class name; a dict from `serialize`; a
            `Quantizer` instance; or any callable tensor -> tensor.

    Raises:
        ValueError: for an unknown name, naming the known ones.
    """
    if identifier is None or isinstance(identifier, Quantizer):
        return identifier
    if isinstance(identifier, str):
        cls = ALIASES.get(identifier) or _classes().get(identifier)
        if cls is None:
            raise ValueError(
                f"Unknown quantizer {identifier!r}. Known quantizers: "
                f"{', '.join(_known_names())}."
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        "Could not interpret quantizer identifier: expected None, a name, a config "
        f"dict, a Quantizer or a callable. Received: {identifier!r}."
    )
