"""QuantEinsumDense's forward and gradients against numpy, and a tiny binary ViT that
learns, on the active backend."""

import numpy as np
import pytest
from autodiff import value_and_vjp

from biper_keras.layers import QuantEinsumDense

RNG = np.random.default_rng(3)


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


# attention's query projection (B, N, D) -> (B, N, heads, head_dim) and output projection
CASES = {
    "qkv": ("abc,cde->abde", (None, 3, 4), "de", (2, 5, 8)),
    "output": ("abcd,cde->abe", (None, 6), "e", (2, 5, 3, 4)),
}


def _layer(equation, output_shape, bias_axes, input_shape):
    layer = QuantEinsumDense(equation, output_shape, bias_axes=bias_axes, input_quantizer="ste_sign",
                             kernel_quantizer="ste_sign", kernel_scale="channel",
                             kernel_constraint="weight_clip")
    layer.build(input_shape)
    kernel = RNG.normal(scale=0.8, size=layer.latent_kernel.shape).astype("float32")
    alpha = RNG.uniform(0.5, 1.5, size=layer.alpha.shape).astype("float32")
    bias = RNG.normal(size=layer.bias.shape).astype("float32")
    layer.set_weights([kernel, bias, alpha])
    return layer, kernel, bias, alpha


@pytest.mark.parametrize("case", sorted(CASES))
def test_quant_einsum_dense_forward_and_gradients_match_numpy(case):
    equation, output_shape, bias_axes, input_shape = CASES[case]
    layer, kernel, bias, alpha = _layer(equation, output_shape, bias_axes, input_shape)
    x = RNG.normal(size=input_shape).astype("float32")
    w_q = sign(kernel) * alpha  # alpha broadcasts over the kernel's trailing unit axes
    expected = np.einsum(equation, sign(x), w_q) + bias
    upstream = RNG.normal(size=expected.shape).astype("float32")

    y, grad_x = value_and_vjp(lambda v: layer(v), x, upstream)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # ste_sign: d sign(x)/dx := 1 where |x| <= 1.
    ins, ker, out = equation.replace("->", ",").split(",")
    grad_wq = np.einsum(f"{ins},{out}->{ker}", sign(x), upstream)
    np.testing.assert_allclose(grad_x, np.einsum(f"{out},{ker}->{ins}", upstream, w_q) * (np.abs(x) <= 1),
                               rtol=1e-4, atol=1e-4)

    def of_kernel(k):
        variables = [k if v is layer._kernel else v for v in layer.trainable_variables]
        return layer.stateless_call(variables, layer.non_trainable_variables, x)[0]

    y_k, grad_k = value_and_vjp(of_kernel, kernel, upstream)
    np.testing.assert_allclose(y_k, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_k, grad_wq * alpha * (np.abs(kernel) <= 1), rtol=1e-4, atol=1e-4)
