"""A +1-padded conv whose input gradient skips the border: TensorFlow backend only
(imported only there).

`conv(pad(q, 1), kernel, "VALID")`'s autodiff computes the gradient of the whole padded
input and slices its interior out. The border's values never enter an input gradient,
so the interior's is the input gradient of a conv with zero padding of the same widths,
what a float SAME conv computes: here the custom gradient asks TensorFlow for exactly
that (`conv2d_backprop_input` with explicit padding), and the kernel's gradient from the
padded input as before. Under XLA both lower to XLA convolutions.
"""

import tensorflow as tf


def ones_padded_conv2d(inputs, kernel, pad_width, strides, dilation_rate):
    """`conv2d(pad(inputs, pad_width, 1.0), kernel, "VALID")` for channels_last inputs and
    a (h, w, in, out) kernel, with the interior-only input gradient."""
    pads = [list(p) for p in pad_width]
    strides, dilations = [1, *strides, 1], [1, *dilation_rate, 1]

    @tf.custom_gradient
    def conv(inputs, kernel):
        padded = tf.pad(inputs, pads, constant_values=1.0)
        outputs = tf.nn.conv2d(padded, kernel, strides, "VALID", dilations=dilations)

        def grad(upstream):
            grad_inputs = tf.compat.v1.nn.conv2d_backprop_input(tf.shape(inputs), kernel, upstream, strides, pads,
                                                      dilations=dilations)
            grad_kernel = tf.compat.v1.nn.conv2d_backprop_filter(padded, tf.shape(kernel), upstream, strides,
                                                                 "VALID", dilations=dilations)
            return grad_inputs, grad_kernel

        return outputs, grad

    return conv(inputs, kernel)
