"""`QuantMultiHeadAttention`: Keras's multi-head attention with quantized projections."""

import keras

from biper_keras import quantizers as quantizers_lib
from biper_keras.layers.base import _KERNEL_SCALES, _serialize
from biper_keras.layers.einsum_dense import QuantEinsumDense

__all__ = ["QuantMultiHeadAttention"]


@keras.saving.register_keras_serializable(package="biper_keras")
class QuantMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` whose query, key, value (and gate) and output
    projections are `QuantEinsumDense` layers with the given quantizers.

    The attention itself (QK^T, softmax, dropout, AV) stays float, as in the binary-ViT
    literature. Without quantizers it computes exactly what `MultiHeadAttention`
    computes with the same weights. Each projection holds its own copy of the
    quantizers (their annealed mu, if any, is one variable per projection);
    `biper_keras.layers.quantized_layers(model)` lists the projections, not this layer.

    Args:
        num_heads, key_dim, ...: as `keras.layers.MultiHeadAttention`.
        input_quantizer, kernel_quantizer, kernel_scale, kernel_scale_initializer:
            as in `QuantEinsumDense`, applied to every projection. With a binary
            input quantizer every projection's input is binarized (W1A1 attention
            projections); with `input_quantizer=None` only weights are (W1A32).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_scale=None,
        kernel_scale_initializer=None,
        **kwargs,
    ):
        super().__init__(num_heads, key_dim, value_dim=value_dim, **kwargs)
        if kernel_scale not in _KERNEL_SCALES:
            raise ValueError(
                "Argument `kernel_scale` must be None or 'channel' (a learnable "
                f"per-output-unit scale). Received: kernel_scale={kernel_scale!r}."
            )
        # Serialized, not as objects: a quantizer held here would be tracked as a
        # sublayer of the attention layer, and its variables counted twice.
        self._quantization = {
            "input_quantizer": _serialize(quantizers_lib.get(input_quantizer)),
            "kernel_quantizer": _serialize(quantizers_lib.get(kernel_quantizer)),
            "kernel_scale": kernel_scale,
            "kernel_scale_initializer": None if kernel_scale_initializer is None
            else keras.initializers.serialize(keras.initializers.get(kernel_scale_initializer)),
        }

    def _quantized(self, float_layer):
        """The QuantEinsumDense with `float_layer`'s config and this layer's quantizers."""
        return QuantEinsumDense.from_config({**float_layer.get_config(), **self._quantization})

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        self._query_dense = self._projection(query_shape, self._key_dim, "query")
        self._key_dense = self._projection(key_shape, self._key_dim, "key")
        if self._use_gate:
            self._gate_dense = self._projection(query_shape, self._value_dim, "gate", "sigmoid")
        self._value_dense = self._projection(value_shape, self._value_dim, "value")
        # The value projection's output rank: its free axes, then heads and head size.
        self._build_attention(len(value_shape) + 1)
        self._output_dense = self._make_output_dense(
            query_shape, self._get_common_kwargs_for_sublayer(), "attention_output")
        # The attention's output: the query's positions, then heads and value size
        # (Keras's own build loses the positions' sizes here).
        self._output_dense.build((*query_shape[:-1], self._num_heads, self._value_dim))

    def _projection(self, input_shape, size, name, activation=None):
        # (batch, *positions, dim) -> (batch, *positions, heads, size), as Keras's own.
        free = "abcdefgh"[:len(input_shape) - 1]
        equation = f"{free}x,xyz->{free}yz"
        bias_axes = "yz"
        layer = QuantEinsumDense(
            equation,
            output_shape=(None,) * (len(free) - 1) + (self._num_heads, size),
            bias_axes=bias_axes if self._use_bias else None,
            activation=activation,
            name=name,
            **self._quantization,
            **self._get_common_kwargs_for_sublayer(),
        )
        layer.build(input_shape)
        return layer

    def _make_output_dense(self, query_shape, common_kwargs, name=None):
        return self._quantized(super()._make_output_dense(query_shape, common_kwargs, name))

    def get_config(self):
        return {**super().get_config(), **self._quantization}
