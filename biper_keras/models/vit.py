"""Vision transformers (ViT / DeiT) with binary attention projections and MLPs.

What is binary, as in the binary-ViT literature (BiViT, Bi-ViT, ProxConnect++): the
query, key, value and output projections of every attention layer and both dense
layers of every MLP. What stays float: the patch embedding, the position embedding,
every LayerNormalization, the attention itself (QK^T, softmax, AV), the residual
adds, and the classifier.

- `input_quantizer=None` (default): weights-only binary, W1A32, ProxConnect++'s
  setting for ViTs.
- with an input quantizer (e.g. `"ste_sign"`): the projections and MLPs are W1A1; on
  the TensorFlow backend at inference they run as 1x1 convolutions over the tokens,
  which Larq Compute Engine converts to its binary `LceBconv2d`.
- `kernel_quantizer=None` and `input_quantizer=None`: the float model, with Keras's
  own `MultiHeadAttention` and `Dense` (what `biper_keras.binarize` takes).

Conversion-friendly choices: the patches are a strided `Conv2D`, the class
prediction is a global average over the tokens (no class token: no broadcast concat),
the MLP's gelu is the tanh approximation (`gelu_tanh`: TFLite builtins; Keras's exact
gelu lowers to `erf`, which TFLite has no builtin for).
"""

import keras
from keras import ops

from biper_keras.layers import QuantDense, QuantMultiHeadAttention
from biper_keras.models.registry import register_model

__all__ = ["vit", "deit_tiny", "deit_small", "PositionEmbedding", "gelu_tanh"]


@keras.saving.register_keras_serializable(package="biper_keras")
def gelu_tanh(x):
    """gelu, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="biper_keras")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding (tokens, dim) to a token sequence (batch, tokens, dim).

    Args:
        initializer: the embedding's initializer (ViT: truncated normal, std 0.02).
    """

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer or keras.initializers.TruncatedNormal(stddev=0.02))

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"PositionEmbedding needs an input of shape (batch, tokens, dim) with known tokens "
                             f"and dim. Received: input_shape={input_shape}.")
        self.embedding = self.add_weight(name="embedding", shape=tuple(input_shape[1:]), initializer=self.initializer)

    def call(self, inputs):
        return inputs + ops.cast(self.embedding, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Argument `{name}` must be an integer > 0. Received: {name}={value!r}.")


def _fresh(quantizer):
    """Each quantized layer gets its own quantizer object (a shared one would be one
    layer tracked by many)."""
    if quantizer is None or isinstance(quantizer, (str, dict)):
        return quantizer
    return keras.saving.serialize_keras_object(quantizer)


@register_model("vit")
def vit(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper", input_quantizer=None,
        kernel_scale="channel", patch_size=None, depth=6, dim=192, heads=3, mlp_dim=None,
        kernel_regularizer=None, kernel_constraint=None, layer_norm_epsilon=1e-6, name="vit"):
    """A pre-norm ViT: patches -> (+ position) -> depth x [x + MHA(LN(x)); x + MLP(LN(x))]
    -> LN -> mean over tokens -> classifier.

    Args:
        input_shape: (height, width, channels), each divisible by `patch_size`.
        num_classes: the classifier's outputs (logits).
        kernel_quantizer, input_quantizer, kernel_scale: of every attention projection
            and MLP dense layer (see the module docstring); both quantizers None: float.
        patch_size: the patches' side; default 4 for inputs up to 64 pixels, else 16.
        depth, dim, heads: transformer blocks, token width, attention heads (dim must
            divide by heads).
        mlp_dim: the MLP's hidden width (default 4 * dim).
        kernel_regularizer, kernel_constraint: of the binary kernels (e.g. BiPer's
            `SinSquared`, `"weight_clip"`).
        layer_norm_epsilon: every LayerNormalization's epsilon (DeiT: 1e-6).
    """
    if patch_size is None:
        patch_size = 4 if max(input_shape[:2]) <= 64 else 16
    mlp_dim = 4 * dim if mlp_dim is None else mlp_dim
    for arg, value in (("num_classes", num_classes), ("patch_size", patch_size), ("depth", depth), ("dim", dim),
                       ("heads", heads), ("mlp_dim", mlp_dim)):
        _check_positive(arg, value)
    if dim % heads:
        raise ValueError(f"Argument `dim` must be divisible by `heads`. Received: dim={dim}, heads={heads}.")
    if len(input_shape) != 3 or any(d is None or d % patch_size for d in input_shape[:2]):
        raise ValueError(f"Argument `input_shape` must be (height, width, channels) with height and width divisible "
                         f"by patch_size={patch_size}. Received: input_shape={input_shape!r}.")
    binary = kernel_quantizer is not None or input_quantizer is not None

    def attention(block):
        if not binary:
            return keras.layers.MultiHeadAttention(heads, dim // heads, name=f"{block}_attn")
        return QuantMultiHeadAttention(heads, dim // heads, input_quantizer=_fresh(input_quantizer),
                                       kernel_quantizer=_fresh(kernel_quantizer), kernel_scale=kernel_scale,
                                       kernel_regularizer=kernel_regularizer, kernel_constraint=kernel_constraint,
                                       name=f"{block}_attn")

    def dense(units, name, activation=None):
        if not binary:
            return keras.layers.Dense(units, activation=activation, name=name)
        return QuantDense(units, activation=activation, input_quantizer=_fresh(input_quantizer),
                          kernel_quantizer=_fresh(kernel_quantizer), kernel_scale=kernel_scale,
                          kernel_regularizer=kernel_regularizer, kernel_constraint=kernel_constraint, name=name)

    def norm(name):
        return keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name=name)

    inputs = keras.Input(input_shape)
    tokens = (input_shape[0] // patch_size) * (input_shape[1] // patch_size)
    x = keras.layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embed")(inputs)
    x = keras.layers.Reshape((tokens, dim), name="patch_tokens")(x)
    x = PositionEmbedding(name="pos_embed")(x)
    for i in range(depth):
        block = f"block{i}"
        h = norm(f"{block}_norm1")(x)
        x = keras.layers.Add(name=f"{block}_add1")([x, attention(block)(h, h)])
        h = norm(f"{block}_norm2")(x)
        h = dense(mlp_dim, f"{block}_mlp1", gelu_tanh)(h)
        x = keras.layers.Add(name=f"{block}_add2")([x, dense(dim, f"{block}_mlp2")(h)])
    x = norm("norm")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model("deit_tiny")
def deit_tiny(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper", input_quantizer=None,
              kernel_scale="channel", patch_size=None, depth=12, dim=192, heads=3, mlp_dim=768, name="deit_tiny",
              **options):
    """DeiT-Tiny (dim 192, 3 heads, 12 blocks, MLP 768) as `vit` builds it."""
    return vit(input_shape, num_classes, kernel_quantizer, input_quantizer, kernel_scale, patch_size, depth, dim,
               heads, mlp_dim, name=name, **options)


@register_model("deit_small")
def deit_small(input_shape=(32, 32, 3), num_classes=10, kernel_quantizer="biper", input_quantizer=None,
               kernel_scale="channel", patch_size=None, depth=12, dim=384, heads=6, mlp_dim=1536, name="deit_small",
               **options):
    """DeiT-Small (dim 384, 6 heads, 12 blocks, MLP 1536) as `vit` builds it."""
    return vit(input_shape, num_classes, kernel_quantizer, input_quantizer, kernel_scale, patch_size, depth, dim,
               heads, mlp_dim, name=name, **options)
