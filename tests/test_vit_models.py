"""The ViT builders, binarize()/float_twin on transformers, parameter memory, and the
conversion of a W1A1 ViT to LCE binary convolutions (TensorFlow backend)."""

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras.binarize import float_twin
from biper_keras.layers import QuantDense, QuantEinsumDense, QuantMultiHeadAttention, quantized_layers
from biper_keras.models import get_model

TINY = dict(depth=2, dim=32, heads=2, mlp_dim=64)
BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
RNG = np.random.default_rng(5)


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0).astype("float32")


def _randomize(model, rng):
    """Random biases, LayerNorm parameters and scales: with the default zeros, sums of
    +/-1 products are even integers and binarizer inputs are exactly 0 too often."""
    for w in model.weights:
        name = w.path.split("/")[-1]
        if name in ("bias", "beta"):
            w.assign(rng.normal(scale=0.5, size=w.shape))
        elif name in ("kernel_scale", "gamma"):
            w.assign(rng.uniform(0.5, 1.5, size=w.shape))


def _vit_params(depth, dim, mlp, patch=4, channels=3, tokens=64, classes=10):
    """Parameter count of the builder's ViT, from its definition."""
    block = 4 * (dim * dim + dim) + 2 * 2 * dim + (dim * mlp + mlp) + (mlp * dim + dim)
    return patch * patch * channels * dim + dim + tokens * dim + depth * block + 2 * dim + dim * classes + classes


def test_deit_tiny_is_the_published_shape_and_its_binary_parts_are_the_projections_and_mlps():
    keras.utils.set_random_seed(0)
    float_model = get_model("deit_tiny", kernel_quantizer=None)
    assert float_model.count_params() == _vit_params(12, 192, 768)
    binary = get_model("deit_tiny")  # BiPer weights, float activations: W1A32
    quantized = quantized_layers(binary)
    assert len(quantized) == 12 * 6
    assert sorted({type(layer).__name__ for layer in quantized}) == ["QuantDense", "QuantEinsumDense"]
    assert all(layer.input_quantizer is None and layer.kernel_quantizer.precision == 1 for layer in quantized)
    float_parts = ["patch_embed", "pos_embed", "block0_norm1", "block11_norm2", "norm", "classifier"]
    assert all(not bk.layers.layer_quantizers(binary.get_layer(n)) for n in float_parts)
    assert type(binary.get_layer("patch_embed")) is keras.layers.Conv2D
    assert type(binary.get_layer("classifier")) is keras.layers.Dense
    assert binary.get_layer("block0_attn").query_dense.alpha.shape == (3, 64)

    # Parameter memory: 1 bit per binary kernel weight, 32 for everything else.
    binary_kernels = 12 * (4 * 192 * 192 + 2 * 192 * 768)
    rest = binary.count_params() - binary_kernels
    stats = bk.summary(binary, print_fn=None)
    assert stats.total("params_1bit") == binary_kernels
    assert stats.memory_bytes == (binary_kernels + 32 * rest) / 8
    float_bytes = bk.summary(float_model, print_fn=None).memory_bytes
    assert float_bytes == 4 * float_model.count_params()
    assert 22 < float_bytes / stats.memory_bytes < 23  # 22.3x; see docs/results.md


def test_deit_small_and_builder_arguments():
    model = get_model("deit_small", input_shape=(64, 64, 3), num_classes=7, kernel_quantizer=None, depth=1)
    assert model.count_params() == _vit_params(1, 384, 1536, tokens=256, classes=7)
    assert get_model("vit", input_shape=(224, 224, 3), depth=1, dim=16, heads=2).get_layer(
        "patch_embed").kernel_size == (16, 16)
    for bad, match in [(dict(dim=30, heads=4), "divisible by `heads`"), (dict(depth=0), "depth"),
                       (dict(patch_size=5), "input_shape"), (dict(mlp_dim=2.5), "mlp_dim")]:
        with pytest.raises(ValueError, match=match):
            get_model("vit", **{**TINY, **bad})


def test_binarize_equals_the_binary_model_built_directly_and_float_twin_inverts_it():
    keras.utils.set_random_seed(1)
    float_model = get_model("vit", kernel_quantizer=None, **TINY)
    _randomize(float_model, RNG)
    binary, report = bk.binarize(float_model, quantizer="ste_sign", input_quantizer="ste_sign")
    assert report.binarized == [f"block{i}_{part}" for i in range(2) for part in ("attn", "mlp1", "mlp2")]
    assert report.kept == {"patch_embed": "first layer (keep_first)", "classifier": "last layer (keep_last)"}
    assert isinstance(binary.get_layer("block1_attn"), QuantMultiHeadAttention)

    direct = get_model("vit", kernel_scale="channel", **TINY, **BINARY)
    for layer in float_model.layers:
        if not layer.weights:
            continue
        target = direct.get_layer(layer.name)
        if isinstance(target, QuantMultiHeadAttention):
            pairs = zip((layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense),
                        (target.query_dense, target.key_dense, target.value_dense, target.output_dense))
        else:
            pairs = [(layer, target)]
        for source, dest in pairs:
            values = source.get_weights()
            if isinstance(dest, (QuantDense, QuantEinsumDense)):
                kernel = values[0]  # alpha: mean |w| over the input axes
                values.append(np.abs(kernel).mean(axis=0 if kernel.ndim == 2 or dest.name != "attention_output"
                                                 else (0, 1)))
            dest.set_weights(values)
    x = RNG.normal(size=(3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.array(binary(x)), np.array(direct(x)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.array(binary(x)), np.array(float_model(x)), atol=1e-2)

    twin = float_twin(binary)
    assert type(twin.get_layer("block0_attn")) is keras.layers.MultiHeadAttention
    assert not quantized_layers(twin)
    np.testing.assert_array_equal(np.array(twin(x)), np.array(float_model(x)))


def _functional_transformer():
    """A keras.io-style block: Keras's MultiHeadAttention, gelu MLP, in a nested model."""
    tokens = keras.Input((6, 8))
    h = keras.layers.LayerNormalization()(tokens)
    h = keras.layers.Add()([tokens, keras.layers.MultiHeadAttention(2, 4, name="inner_mha")(h, h)])
    h = keras.layers.Dense(8, activation="gelu", name="inner_mlp")(h)
    block = keras.Model(tokens, h, name="block")
    inputs = keras.Input((6, 8))
    x = keras.layers.Dense(8, name="embed")(inputs)
    x = block(x)
    x = keras.layers.EinsumDense("abc,cd->abd", (None, 8), bias_axes="d", name="proj")(x)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs)


def test_binarize_reaches_nested_models_and_einsum_dense():
    keras.utils.set_random_seed(2)
    model = _functional_transformer()
    _randomize(model, RNG)
    binary, report = bk.binarize(model, quantizer="bnn_pp", input_quantizer=None)
    assert report.binarized == ["inner_mha", "inner_mlp", "proj"]
    block = binary.get_layer("block")
    assert isinstance(block.get_layer("inner_mha"), QuantMultiHeadAttention)
    assert isinstance(binary.get_layer("proj"), QuantEinsumDense)
    # alpha of the EinsumDense starts at mean |w| per output unit.
    np.testing.assert_allclose(np.array(binary.get_layer("proj").alpha),
                               np.abs(np.array(model.get_layer("proj").kernel)).mean(axis=0), rtol=1e-6)
    x = RNG.normal(size=(2, 6, 8)).astype("float32")
    np.testing.assert_array_equal(np.array(float_twin(binary)(x)), np.array(model(x)))


@keras.saving.register_keras_serializable(package="test_vit_models")
class TransformerBlock(keras.layers.Layer):
    """A user's block that creates its layers in its own code."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(2, 4)
        self.mlp = keras.layers.Dense(8)

    def call(self, x):
        return self.mlp(x + self.attention(x, x))


def test_binarize_refuses_a_layer_that_creates_its_projections_in_its_own_code():
    inputs = keras.Input((6, 8))
    x = keras.layers.Dense(8, name="embed")(inputs)
    x = TransformerBlock(name="user_block")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    with pytest.raises(ValueError, match=r"inside layer 'user_block' \(TransformerBlock\).*MultiHeadAttention"):
        bk.binarize(model)
    binary, report = bk.binarize(model, keep=["user_block"])  # kept float, by name
    assert report.kept["user_block"] == "named in keep" and not quantized_layers(binary)


def test_w1a1_vit_converts_every_binary_projection_to_lce_bconv2d_and_matches_keras():
    from biper_keras.convert import convert

    keras.utils.set_random_seed(3)
    model = get_model("vit", kernel_scale="channel", **TINY, **BINARY)
    _randomize(model, np.random.default_rng(1))
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    result = convert(model, data=x)
    binarized = len(quantized_layers(model))
    assert binarized == 2 * 6 and all(bk.layers.runs_as_tokenwise_conv(l) for l in quantized_layers(model))
    assert result.ops.get("LceBconv2d", 0) == binarized
    assert "Erf" not in str(result.ops) and result.ops.get("GELU") == 2  # tanh gelu -> builtin GELU
    assert result.parity.passed and result.parity.max_abs_diff < 1e-4, result.parity
    # The interpreter's output, checked here too rather than only through the report.
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    np.testing.assert_allclose(np.asarray(Interpreter(result.flatbuffer).predict(x)),
                               np.array(model(x, training=False)), rtol=1e-4, atol=1e-4)


def test_a_users_functional_vit_binarized_converts_its_attention_and_mlps_to_lce_bconv2d():
    """A keras.io-style ViT: Keras's MultiHeadAttention, patches by Conv2D + Reshape,
    Dense MLPs; binarize() with its defaults (BiPer weights, binary inputs)."""
    from biper_keras.convert import convert
    from biper_keras.models.vit import gelu_tanh

    keras.utils.set_random_seed(6)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Reshape((16, 16))(keras.layers.Conv2D(16, 4, strides=4, name="patches")(inputs))
    for i in range(2):
        h = keras.layers.LayerNormalization()(x)
        x = keras.layers.Add()([x, keras.layers.MultiHeadAttention(2, 8, name=f"mha{i}")(h, h)])
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(32, activation=gelu_tanh, name=f"fc{i}a")(h)
        x = keras.layers.Add()([x, keras.layers.Dense(16, name=f"fc{i}b")(h)])
    outputs = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling1D()(x))
    binary, report = bk.binarize(keras.Model(inputs, outputs))
    assert report.binarized == ["mha0", "fc0a", "fc0b", "mha1", "fc1a", "fc1b"]
    _randomize(binary, np.random.default_rng(2))
    x = np.random.default_rng(3).normal(size=(8, 16, 16, 3)).astype("float32")
    result = convert(binary, data=x)
    assert result.ops.get("LceBconv2d", 0) == len(quantized_layers(binary)) == 12
    assert result.parity.passed and result.parity.max_abs_diff < 1e-4, result.parity
