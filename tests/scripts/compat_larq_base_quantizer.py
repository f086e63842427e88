"""What tests/test_compat.py checks of Larq's quantizer base class, in the Larq process."""

import larq as lq
from biper_keras import _compat
base = _compat.larq_base_quantizer()
assert issubclass(lq.quantizers.SteSign, base) and base.__module__ == "larq.quantizers"
layer = lq.layers.QuantDense(2, kernel_quantizer=lq.quantizers.SteSign())
print("BASE-OK", isinstance(layer.kernel_quantizer, base))
