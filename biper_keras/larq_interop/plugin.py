"""The Larq plugin: BiPer registered with Larq and tf_keras (see the package docstring)."""

import os

__all__ = ["register", "import_larq"]

_LEGACY_HINT = (
    "Larq needs tf_keras (Keras 2): set the environment variable TF_USE_LEGACY_KERAS=1 "
    "before TensorFlow is first imported (e.g. `TF_USE_LEGACY_KERAS=1 python ...`), "
    "and install larq (pip install larq)."
)

_registered = {}


def import_larq():
    """Imports larq, or raises one ImportError that says how to make it importable."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise ImportError(f"Larq cannot be used in this process. {_LEGACY_HINT}")
    try:
        import larq
    except (ImportError, AttributeError) as err:
        # Without tf_keras larq fails with an AttributeError deep in its import.
        raise ImportError(f"Larq could not be imported ({err}). {_LEGACY_HINT}") from err
    return larq


def _make_classes(lq):
    import keras
    import tensorflow as tf

    from biper_keras import quantizers

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "The Larq plugin runs the quantizer math through Keras 3 ops on TensorFlow; "
            f"this process has KERAS_BACKEND={keras.backend.backend()!r}. Unset it or "
            "set KERAS_BACKEND=tensorflow."
        )

    class BiPer(lq.quantizers._BaseQuantizer):
        __doc__ = quantizers.BiPer.__doc__

        def __init__(self, omega=20.0, binarize=True, **kwargs):
            # The Keras 3 quantizer validates the arguments and holds the math; only
            # its bound method is kept, which tf_keras does not track as a dependency.
            spec = quantizers.BiPer(omega=omega, binarize=binarize)
            self.omega, self.binarize, self.precision = spec.omega, spec.binarize, spec.precision
            self._quantize = spec.quantize_tensor
            super().__init__(**kwargs)

        def call(self, inputs):
            # Read a variable outside the custom gradient (see Quantizer.call).
            return super().call(self._quantize(tf.convert_to_tensor(inputs)))

        def get_config(self):
            return {**super().get_config(), "omega": self.omega, "binarize": self.binarize}

    BiPer.__module__, BiPer.__qualname__ = "biper_keras.larq_interop", "BiPer"
    tf.keras.utils.get_custom_objects().update({"BiPer": BiPer, "biper": BiPer})
    return {"BiPer": BiPer}


def register():
    """Registers `"biper"` / `BiPer` with Larq and tf_keras (idempotent).

    Returns the dict of registered tf_keras quantizer classes.
    """
    if not _registered:
        _registered.update(_make_classes(import_larq()))
    return dict(_registered)
