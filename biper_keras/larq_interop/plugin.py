"""The Larq plugin: BiPer registered with Larq and tf_keras (see the package docstring)."""

import os

from biper_keras import _compat

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

    class BiPer(_compat.larq_base_quantizer()):
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
    return {"BiPer": BiPer, **_make_layer_twins(lq, tf)}


def _make_layer_twins(lq, tf):
    """tf_keras twins of what the package's own CIFAR models use beyond Larq: the ResNet
    option-A shortcut and QuantConv2D's `normalize_inputs` (the BiPer authors' per-sample
    activation normalization), registered with tf_keras so a Larq model holding them saves
    and loads where biper_keras.larq_interop is imported."""
    from biper_keras.layers import conv as bl
    from biper_keras.models import blocks

    class OptionAShortcut(tf.keras.layers.Layer):
        __doc__ = blocks.OptionAShortcut.__doc__

        def __init__(self, filters, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters

        def call(self, inputs):
            x = tf.nn.avg_pool2d(inputs, 2, 2, "VALID")
            extra = self.filters - inputs.shape[-1]
            return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

        def get_config(self):
            return {**super().get_config(), "filters": self.filters}

    class NormalizedQuantConv2D(lq.layers.QuantConv2D):
        """Larq's QuantConv2D with the BiPer authors' per-sample activation normalization
        before the input quantizer, in training only: biper_keras's
        `QuantConv2D(normalize_inputs=True)`. The sign, and so inference, is unchanged."""

        def __init__(self, *args, normalize_inputs=True, **kwargs):
            super().__init__(*args, **kwargs)
            self.normalize_inputs = bool(normalize_inputs)

        def call(self, inputs, training=None):
            if self.normalize_inputs and training:
                inputs = bl._per_sample_normalized(inputs)
            return super().call(inputs)

        def get_config(self):
            return {**super().get_config(), "normalize_inputs": self.normalize_inputs}

    twins = {"OptionAShortcut": OptionAShortcut, "NormalizedQuantConv2D": NormalizedQuantConv2D}
    for name, cls in twins.items():
        cls.__module__, cls.__qualname__ = "biper_keras.larq_interop", name
        tf.keras.saving.register_keras_serializable(package="biper_keras")(cls)
    return twins


def register():
    """Registers `"biper"` / `BiPer` with Larq and tf_keras (idempotent).

    Returns the dict of registered tf_keras quantizer classes.
    """
    if not _registered:
        _registered.update(_make_classes(import_larq()))
    return dict(_registered)
