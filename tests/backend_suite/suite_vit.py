"""QuantEinsumDense's forward and gradients against numpy, and a tiny binary ViT that
learns, on the active backend."""

import keras
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


def test_tiny_bnn_pp_vit_learns_with_mu_annealed_in_every_projection():
    from biper_keras.models import get_model
    from biper_keras.training import MuSchedule, annealed_quantizers

    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    y = np.arange(32) % 2
    x = (rng.normal(size=(32, 16, 16, 3)) + np.where(y, 0.5, -0.5)[:, None, None, None]).astype("float32")
    model = get_model("vit", input_shape=(16, 16, 3), num_classes=2, kernel_quantizer="bnn_pp", depth=1, dim=16,
                      heads=2, mlp_dim=32, patch_size=8)
    # TF: tracing the steps costs more than running them eagerly at this size (not so
    # on JAX, where every eager op compiles).
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=keras.backend.backend() == "tensorflow")
    before = model.evaluate(x, y, verbose=0)
    schedule = MuSchedule(1.0, 4.0, 6, "exponential")
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False, callbacks=[schedule])
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.8 * before, (before, after)
    mus = annealed_quantizers(model)
    assert len(mus) == 6  # query, key, value, output, and the MLP's two dense layers
    np.testing.assert_allclose([float(keras.ops.convert_to_numpy(q.mu)) for q in mus], schedule.value(5), rtol=1e-6)
