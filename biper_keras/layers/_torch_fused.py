"""A binary conv's training-time input path in a few in-place passes: torch backend only
(imported only there; `import torch` is safe because the backend is torch).

Keras runs a torch step op by op, and each `keras.ops` call is a pass over memory into a
new tensor. The input path of a binary conv in training -- the sign, the +1 pad, the
gradient of the authors' per-sample normalization -- is a dozen such passes written with
`keras.ops`; measured, they made the binary conv 1.43x a float conv on torch
(benchmarks/train_step.py --parts). Here the sign is written straight into the padded
buffer (no pad copy), and the gradient reuses its buffers in place. TensorFlow (under
XLA) and JAX compile the generic `keras.ops` code into fused loops themselves, so they
keep it.
"""

import math

import torch

from biper_keras import quantizers


def _interior(padded, pad_width):
    """The view of `padded` that holds the unpadded tensor."""
    return padded[tuple(slice(before, padded.shape[i] - after) for i, (before, after) in enumerate(pad_width))]


def _quantized_padded(x, forward, pad_width, value):
    """A new tensor: `forward(x)` inside, `value` on the border (no copy of x)."""
    shape = [size + before + after for size, (before, after) in zip(x.shape, pad_width)]
    padded = x.new_empty(shape)
    for axis, (before, after) in enumerate(pad_width):  # the border only
        if before:
            padded.narrow(axis, 0, before).fill_(value)
        if after:
            padded.narrow(axis, shape[axis] - after, after).fill_(value)
    forward(x, _interior(padded, pad_width))
    return padded


class _QuantizedPadded(torch.autograd.Function):
    """forward(x) padded with `value` per `pad_width`; dL/dx = gradient(x, dL/d interior)."""

    @staticmethod
    def forward(ctx, x, forward, gradient, pad_width, value):
        ctx.save_for_backward(x)
        ctx.gradient, ctx.pad_width = gradient, pad_width
        return _quantized_padded(x, forward, pad_width, value)

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return ctx.gradient(x, _interior(upstream, ctx.pad_width)), None, None, None, None


def quantized_padded(x, forward, gradient, pad_width, value):
    """`pad(q(x), pad_width, value)` in one buffer, q's forward and gradient given as
    `forward(x, out)` (writes q(x) into `out`) and `gradient(x, upstream)` -> dL/dx."""
    return _QuantizedPadded.apply(x, forward, gradient, tuple(map(tuple, pad_width)), float(value))


class _QuantizedPaddedConv2D(torch.autograd.Function):
    """conv2d(pad(q(x), value), kernel) for channels_last x and Keras's (h, w, in, out)
    kernel, as `keras.ops.conv` computes it with padding="valid", in fewer passes:

    - Keras's torch conv copies its input to NCHW and back to channels_last; the
      padded buffer here is channels_last already, so the conv reads it as it is;
    - the input gradient is computed for the interior only, where the pad is the same
      on both sides: the gradient of a conv with that zero `padding` (the border's
      values do not enter an input gradient), not the padded input's and a slice.
    """

    @staticmethod
    def forward(ctx, x, kernel, forward, gradient, pad_width, value, strides, dilation, groups):
        padded = _quantized_padded(x, forward, pad_width, value)
        ctx.save_for_backward(x, kernel, padded)
        ctx.gradient, ctx.pad_width, ctx.conv = gradient, pad_width, (strides, dilation, groups)
        outputs = torch.nn.functional.conv2d(padded.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), None,
                                             strides, 0, dilation, groups)
        return outputs.permute(0, 2, 3, 1)

    @staticmethod
    def backward(ctx, upstream):
        x, kernel, padded = ctx.saved_tensors
        strides, dilation, groups = ctx.conv
        upstream = upstream.permute(0, 3, 1, 2)
        weight = kernel.permute(3, 2, 0, 1)

        def conv_backward(inputs, padding, mask):
            return torch.ops.aten.convolution_backward(upstream, inputs, weight, None, strides, padding, dilation,
                                                       False, [0, 0], groups, mask)

        grad_x = grad_kernel = None
        if ctx.needs_input_grad[1]:
            grad_kernel = conv_backward(padded.permute(0, 3, 1, 2), [0, 0], [False, True, False])[1].permute(2, 3, 1, 0)
        if ctx.needs_input_grad[0]:
            (top, bottom), (left, right) = ctx.pad_width[1:3]
            if top == bottom and left == right:
                grad_inputs = conv_backward(x.permute(0, 3, 1, 2), [top, left], [True, False, False])[0]
            else:
                grad_inputs = conv_backward(padded.permute(0, 3, 1, 2), [0, 0], [True, False, False])[0]
                grad_inputs = grad_inputs[:, :, top:top + x.shape[1], left:left + x.shape[2]]
            grad_x = ctx.gradient(x, grad_inputs.permute(0, 2, 3, 1))
        return grad_x, grad_kernel, None, None, None, None, None, None, None


def quantized_padded_conv2d(x, kernel, forward, gradient, pad_width, value, strides, dilation, groups):
    """`conv2d(quantized_padded(x, ...), kernel)`, "valid", channels_last (see
    `_QuantizedPaddedConv2D`)."""
    return _QuantizedPaddedConv2D.apply(x, kernel, forward, gradient, tuple(map(tuple, pad_width)), float(value),
                                        tuple(strides), tuple(dilation), groups)


def binary_sign_into(x, out):
    """out := sign(x) with sign(0) = +1 (the package's `binary_sign`), three in-place passes."""
    torch.sign(x, out=out)
    out.add_(0.1).sign_()


def upstream_times_derivative(quantizer, x, scale, upstream, mu):
    """`upstream * q'(x * scale)` for the quantizer's backward gradient q' (`scale` a
    positive per-sample tensor or 1.0), in one new buffer: a few in-place passes for
    Bi-Real's approx_sign and the clipped straight-through estimator, `keras.ops` (one
    new tensor per op) for any other quantizer."""
    backward = type(quantizer).backward_gradient
    if backward is quantizers.ApproxSign.backward_gradient:  # max(0, 2 - 2|u|)
        h = torch.abs(x)
        return h.mul_(scale * -2.0).add_(2.0).clamp_(min=0.0).mul_(upstream)
    if backward is quantizers.SteSign.backward_gradient and quantizer.clip_value is not None:
        h = torch.abs(x)  # 1 where |u| <= clip_value (bounds included), else 0
        return h.mul_(scale).le_(quantizer.clip_value).mul_(upstream)
    return upstream * quantizer.backward_gradient(x * scale, mu)


def normalized_gradient(quantizer):
    r"""The gradient of `q(x / sigma)` for a scale-invariant quantizer q: (x, upstream,
    mu) -> dL/dx. The formula is `conv._normalized_gradient`'s (the same math written
    with `keras.ops`; its docstring derives it),

        dL/dx = h / sigma - sum(h * x) * (x - mean) / ((n - 1) * sigma^3),  h = upstream * q'(x / sigma),

    here with two reductions as dot products and the rest in place in two buffers
    (x - mean, and h): measured 3.6 ms against 25 ms for the `keras.ops` code on one
    ResNet-20 stage-1 activation (128x32x32x16). `torch.var_mean` alone took 6.8 ms.
    """

    def gradient(x, upstream, mu):
        batch = x.shape[0]
        n = math.prod(x.shape[1:])
        per_sample = (batch,) + (1,) * (x.ndim - 1)
        flat = x.reshape(batch, -1)
        centered = flat - flat.sum(dim=1, keepdim=True) / n  # two passes, as the authors' torch.var
        inv_sigma = torch.rsqrt(torch.linalg.vecdot(centered, centered) / (n - 1) + 1e-5)
        h = upstream_times_derivative(quantizer, x, inv_sigma.reshape(per_sample), upstream, mu)
        # sum(h * x) (= sum(h * (x - mean)) + mean * sum(h); the formula's, kept as it is).
        through_sigma = torch.linalg.vecdot(h.reshape(batch, -1), flat) * inv_sigma.pow(3) / (n - 1)
        # h / sigma - through_sigma * (x - mean), in h's buffer.
        out = h.reshape(batch, -1).mul_(inv_sigma.unsqueeze(1)).addcmul_(centered, through_sigma.unsqueeze(1), value=-1.0)
        return out.reshape(x.shape)

    return gradient
