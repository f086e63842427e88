"""Larq plugin: BiPer inside Larq's own tf_keras layers (TensorFlow only).

    import os
    os.environ["TF_USE_LEGACY_KERAS"] = "1"   # before TensorFlow is imported
    import larq as lq
    from biper_keras import larq_interop

    lq.layers.QuantConv2D(64, 3, kernel_quantizer="biper", input_quantizer="ste_sign")
    lq.layers.QuantConv2D(64, 3, kernel_quantizer=larq_interop.BiPer(omega=20.0))

As in Larq, where defining a quantizer registers it, importing this module registers
`"biper"` with Larq when Larq can be imported in the process; `register()` does it
explicitly (idempotent) and raises one clear ImportError when Larq cannot be imported.
Larq runs on tf_keras (Keras 2), which TensorFlow only hands out when
`TF_USE_LEGACY_KERAS=1` is set before it is imported; larq is imported here lazily, so
importing `biper_keras` never needs it. The quantizer math is the Keras 3 quantizer's own,
run on TF tensors.
"""

import importlib.util
import os

from .bridge import fold_kernel_scale, from_larq, to_larq
from .plugin import import_larq, register
from .zoo import FUNCTION_QUANTIZERS, MagnitudeAwareSignUnclipped, XnorWeightScale

__all__ = ["register", "import_larq", "to_larq", "from_larq", "fold_kernel_scale", "FUNCTION_QUANTIZERS",
           "XnorWeightScale", "MagnitudeAwareSignUnclipped"]


if os.environ.get("TF_USE_LEGACY_KERAS") == "1" and importlib.util.find_spec("larq") is not None:
    try:
        register()  # Larq's convention: the quantizer is there once its module is imported
    except ImportError:
        pass  # a larq that cannot load: register() says why when it is asked for


_TF_KERAS_CLASSES = ("BiPer", "OptionAShortcut", "NormalizedQuantConv2D")


def __getattr__(name):
    # The tf_keras classes (`larq_interop.BiPer`, the layer twins `to_larq` uses) exist
    # once larq can be imported.
    if name in _TF_KERAS_CLASSES:
        return register()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
