"""Larq plugin: BiPer inside Larq's own tf_keras layers (TensorFlow only).

    import os
    os.environ["TF_USE_LEGACY_KERAS"] = "1"   # before TensorFlow is imported
    import larq as lq
    from biper_keras import larq_interop

    larq_interop.register()
    lq.layers.QuantConv2D(64, 3, kernel_quantizer="biper", input_quantizer="ste_sign")
    lq.layers.QuantConv2D(64, 3, kernel_quantizer=larq_interop.BiPer(omega=20.0))

Larq runs on tf_keras (Keras 2), which TensorFlow only hands out when
`TF_USE_LEGACY_KERAS=1` is set before it is imported; larq is imported here lazily, so
importing `biper_keras` never needs it. The quantizer math is the Keras 3 quantizer's own,
run on TF tensors.
"""

from .bridge import from_larq, to_larq
from .plugin import import_larq, register
from .zoo import FUNCTION_QUANTIZERS, MagnitudeAwareSignUnclipped, XnorWeightScale

__all__ = ["register", "import_larq", "to_larq", "from_larq", "FUNCTION_QUANTIZERS",
           "XnorWeightScale", "MagnitudeAwareSignUnclipped"]


def __getattr__(name):
    # `larq_interop.BiPer` is the tf_keras class; it exists once larq can be imported.
    if name == "BiPer":
        return register()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
