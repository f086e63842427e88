"""A binary QuantConv2D in training -- the +1 pad, the input quantizer, the authors'
per-sample normalization, BiPer and alpha -- against the same computation written
with plain PyTorch autograd, on the active backend. Each backend has its own route
here: on TensorFlow op by op the border term and under XLA the interior-only input
gradient (biper_keras/layers/_tf_fused.py), JAX's XLA, and torch's in-place kernels
(biper_keras/layers/_torch_fused.py, with its own conv backward)."""

import math

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from autodiff import layer_value_and_grads

import biper_keras as bk

OMEGA = 20.0
# Each quantizer's backward derivative q'(u), written out (the forward is the sign).
DERIVATIVES = {
    "approx_sign": lambda u: (2.0 - 2.0 * u.abs()).clamp(min=0.0),
    "ste_sign": lambda u: (u.abs() <= 1.0).to(u.dtype),
    # Larq's swish_sign, beta = 5: d/du (2 sigmoid(5u)(1 + 5u(1 - sigmoid(5u))) - 1).
    "swish_sign": lambda u: 5.0 * (2.0 - 5.0 * u * torch.tanh(2.5 * u)) / (1.0 + torch.cosh(5.0 * u)),
}


class _Sign(torch.autograd.Function):
    """sign(u) with sign(0) = +1, gradient upstream * derivative(u)."""

    @staticmethod
    def forward(ctx, u, derivative):
        ctx.save_for_backward(u)
        ctx.derivative = derivative
        return torch.where(u >= 0, 1.0, -1.0).to(u.dtype)

    @staticmethod
    def backward(ctx, upstream):
        (u,) = ctx.saved_tensors
        return upstream * ctx.derivative(u), None


def _same_pads(size, stride, kernel=3):
    """TensorFlow's SAME: (before, after) with the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _reference(x, kernel, alpha, upstream, quantizer, stride, normalize, binary_kernel=True):
    """(y, dL/dx, dL/dkernel, dL/dalpha) in plain PyTorch, channels_last in and out."""
    x, kernel, alpha = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, kernel, alpha))
    u = x / torch.sqrt(torch.var(x, dim=(1, 2, 3), keepdim=True) + 1e-5) if normalize else x
    q = _Sign.apply(u, DERIVATIVES[quantizer]).permute(0, 3, 1, 2)
    (top, bottom), (left, right) = _same_pads(x.shape[1], stride), _same_pads(x.shape[2], stride)
    q = F.pad(q, (left, right, top, bottom), value=1.0)
    s = torch.sin(OMEGA * kernel)  # BiPer: sign(sin(omega w)), gradient omega cos(omega w)
    w = s + (torch.where(s >= 0, 1.0, -1.0).to(s.dtype) - s).detach() if binary_kernel else kernel
    y = F.conv2d(q, (w * alpha).permute(3, 2, 0, 1), stride=stride).permute(0, 2, 3, 1)
    (y * torch.tensor(upstream, dtype=torch.float64)).sum().backward()
    return [t.detach().numpy() for t in (y, x.grad, kernel.grad, alpha.grad)]


# Each case compiles its own gradient on JAX (~0.5 s): the default quantizer on every
# route (pads equal on both sides, (1, 1) at stride 2, and SAME's (0, 1)); the others on one.
CASES = [("approx_sign", normalize, stride, size) for normalize in (True, False)
         for stride, size in ((1, 8), (2, 9), (2, 8))]
CASES += [(quantizer, True, 2, 8) for quantizer in ("ste_sign", "swish_sign")] + [("ste_sign", False, 1, 8)]


# TensorFlow trains op by op (Keras's default on a CPU) or under XLA (`train()`'s long runs),
# each with its own route for the +1 pad.
XLA = [False, True] if keras.backend.backend() == "tensorflow" else [False]


@pytest.mark.parametrize("xla", XLA)
@pytest.mark.parametrize("quantizer, normalize, stride, size", CASES)
def test_training_forward_and_gradients_match_plain_pytorch(quantizer, normalize, stride, size, xla):
    _check(quantizer, normalize, stride, size, "channels_last", xla)


if keras.backend.backend() != "tensorflow":  # TensorFlow's CPU conv is channels_last only

    @pytest.mark.parametrize("normalize", [True, False])
    def test_channels_first_matches_plain_pytorch(normalize):
        _check("approx_sign", normalize, 1, 8, "channels_first")


def test_a_float_kernel_matches_plain_pytorch():
    # No kernel quantizer and no alpha: the conv reads the kernel variable itself.
    _check("approx_sign", True, 1, 8, "channels_last", binary_kernel=False)


def _check(quantizer, normalize, stride, size, data_format, xla=False, binary_kernel=True):
    rng = np.random.default_rng(stride * 100 + size)
    x = rng.normal(0.1, 0.8, size=(3, size, size + 1, 5)).astype("float32")
    layer = bk.QuantConv2D(6, 3, strides=stride, padding="same", pad_values=1.0, use_bias=False,
                           input_quantizer=quantizer, kernel_quantizer=bk.BiPer(omega=OMEGA) if binary_kernel else None,
                           kernel_scale="channel" if binary_kernel else None, normalize_inputs=normalize,
                           data_format=data_format)
    to_layer = (lambda a: a) if data_format == "channels_last" else (lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    from_layer = (lambda a: a) if data_format == "channels_last" else (lambda a: a.transpose(0, 2, 3, 1))
    layer.build(to_layer(x).shape)
    kernel = rng.normal(0.0, 0.1, size=(3, 3, 5, 6)).astype("float32")
    alpha = rng.uniform(0.2, 1.0, size=(6,)).astype("float32") if binary_kernel else np.ones(6, "float32")
    layer._kernel.assign(kernel)
    if binary_kernel:
        layer.alpha.assign(alpha)
    upstream = rng.normal(size=from_layer(np.zeros(layer.compute_output_shape(to_layer(x).shape))).shape)
    upstream = upstream.astype("float32")

    y, g_x, g_vars = layer_value_and_grads(layer, to_layer(x), to_layer(upstream), xla)
    y, g_x = from_layer(y), from_layer(g_x)
    grads = dict(zip([v.path for v in layer.trainable_variables], g_vars))
    expected = _reference(x, kernel, alpha, upstream, quantizer, stride, normalize, binary_kernel)
    np.testing.assert_allclose(y, expected[0], rtol=1e-5, atol=1e-4)
    scale = np.abs(expected[1]).max()
    np.testing.assert_allclose(g_x, expected[1], atol=2e-5 * scale)
    np.testing.assert_allclose(grads[layer._kernel.path], expected[2], atol=2e-5 * np.abs(expected[2]).max())
    if binary_kernel:
        np.testing.assert_allclose(grads[layer.alpha.path], expected[3], atol=2e-5 * np.abs(expected[3]).max())
