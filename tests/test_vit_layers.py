"""QuantEinsumDense and QuantMultiHeadAttention on the TensorFlow backend: equality with
Keras's float layers, the latent-kernel rule, the token-wise conv lowering, saving, and
what they refuse. (Forward and gradients on every backend: backend_suite/suite_vit.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import biper_keras as bk
from biper_keras import context
from biper_keras.layers import QuantDense, QuantEinsumDense, QuantMultiHeadAttention, quantized_layers
from biper_keras.training import annealed_quantizers

RNG = np.random.default_rng(11)
BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip")


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0).astype("float32")


def _randomize(layer):
    layer.set_weights([RNG.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])


@pytest.mark.parametrize("kwargs", [
    dict(num_heads=2, key_dim=4),
    dict(num_heads=3, key_dim=2, value_dim=5, use_bias=False, output_shape=7),
    dict(num_heads=2, key_dim=3, use_gate=True),
])
def test_attention_without_quantizers_equals_keras_attention(kwargs):
    q, v = RNG.normal(size=(2, 5, 6)).astype("float32"), RNG.normal(size=(2, 4, 6)).astype("float32")
    mask = RNG.uniform(size=(2, 5, 4)) > 0.3
    float_mha = keras.layers.MultiHeadAttention(**kwargs)
    expected = float_mha(q, v, attention_mask=mask)
    _randomize(float_mha)
    expected = np.array(float_mha(q, v, attention_mask=mask))
    quant = QuantMultiHeadAttention(**kwargs)
    quant(q, v, attention_mask=mask)
    assert [w.path.split("/", 1)[1] for w in quant.weights] == [w.path.split("/", 1)[1] for w in float_mha.weights]
    quant.set_weights(float_mha.get_weights())
    for training in (False, True):
        np.testing.assert_array_equal(np.array(quant(q, v, attention_mask=mask, training=training)), expected)


def test_quantized_attention_binarizes_every_projection_and_nothing_else():
    x = RNG.normal(size=(2, 5, 6)).astype("float32")
    quant = QuantMultiHeadAttention(2, 3, kernel_scale="channel", **{k: v for k, v in BINARY.items()
                                                                      if k != "kernel_constraint"})
    quant(x, x)
    _randomize(quant)
    projections = [quant.query_dense, quant.key_dense, quant.value_dense, quant.output_dense]
    assert all(isinstance(p, QuantEinsumDense) for p in projections)
    assert [p.alpha.shape for p in projections] == [(2, 3), (2, 3), (2, 3), (6,)]

    # Independent: float attention on the binarized inputs and +/-alpha kernels.
    w = {p.name: (_sign(np.array(p.latent_kernel)) * np.array(p.alpha), np.array(p.bias)) for p in projections}
    sx = _sign(x)
    qh, kh, vh = (np.einsum("abc,cde->abde", sx, w[n][0]) + w[n][1] for n in ("query", "key", "value"))
    scores = np.einsum("aqhd,akhd->ahqk", qh, kh) / np.sqrt(3.0)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    heads = np.einsum("ahqk,akhd->aqhd", probs, vh)
    expected = np.einsum("abcd,cde->abe", _sign(heads), w["attention_output"][0]) + w["attention_output"][1]
    np.testing.assert_allclose(np.array(quant(x, x, training=True)), expected, rtol=1e-4, atol=1e-4)


def test_latent_kernel_rule_and_per_unit_scale():
    layer = QuantEinsumDense("abc,cde->abde", (None, 2, 3), kernel_quantizer="ste_sign", kernel_scale="channel",
                             kernel_constraint="weight_clip")
    layer.build((None, 4, 5))
    alpha = RNG.uniform(0.5, 2.0, size=(2, 3)).astype("float32")
    layer.alpha.assign(alpha)
    latent = np.array(layer._kernel)
    np.testing.assert_array_equal(np.array(layer.kernel), latent)
    np.testing.assert_array_equal(np.array(layer.latent_kernel), latent)
    with context.quantized_scope(True):
        np.testing.assert_array_equal(np.array(layer.kernel), _sign(latent) * alpha[None])
    # A kernel whose unit axis comes first: alpha must broadcast over the right axis.
    first = QuantEinsumDense("ab,cb->ac", 3, kernel_quantizer="ste_sign", kernel_scale="channel",
                             kernel_constraint="weight_clip")
    first.build((None, 4))
    assert first.alpha.shape == (3,)
    first.alpha.assign([1.0, 2.0, 3.0])
    with context.quantized_scope(True):
        np.testing.assert_array_equal(np.array(first.kernel), _sign(np.array(first._kernel)) * [[1.0], [2.0], [3.0]])


def _graph_ops(layer, x, training):
    fn = tf.function(lambda v: layer(v, training=training))
    return {op.type for op in fn.get_concrete_function(tf.TensorSpec(x.shape)).graph.get_operations()}


@pytest.mark.parametrize("layer,shape", [
    (lambda: QuantEinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de", **BINARY), (2, 7, 5)),
    (lambda: QuantEinsumDense("abcd,cde->abe", (None, 4), bias_axes="e", **BINARY), (2, 7, 3, 2)),
    (lambda: QuantEinsumDense("abc,cd->abd", (6, 4), bias_axes="b", **BINARY), (2, 6, 5)),
    (lambda: QuantDense(4, activation="relu", **BINARY), (2, 7, 5)),
])
def test_binary_tokenwise_projection_runs_as_a_1x1_conv_at_inference(layer, shape):
    layer = layer()
    x = RNG.normal(size=shape).astype("float32")
    layer(x)
    _randomize(layer)
    if layer.bias is not None:
        layer.bias.assign(RNG.normal(size=layer.bias.shape))
    inference, training = np.array(layer(x, training=False)), np.array(layer(x, training=True))
    np.testing.assert_allclose(inference, training, rtol=1e-5, atol=1e-5)
    assert "Conv2D" in _graph_ops(layer, x, False)
    assert "Conv2D" not in _graph_ops(layer, x, True)
    assert bk.layers.runs_as_tokenwise_conv(layer)


def test_non_tokenwise_or_float_input_projection_stays_an_einsum():
    x = RNG.normal(size=(2, 6, 5)).astype("float32")
    # contracts the token axis: not a per-token projection
    across = QuantEinsumDense("abc,bd->adc", (4, None), **BINARY)
    across(x)
    w = np.array(across._kernel)
    np.testing.assert_allclose(np.array(across(x, training=False)), np.einsum("abc,bd->adc", _sign(x), _sign(w)),
                               rtol=1e-5, atol=1e-5)
    assert "Conv2D" not in _graph_ops(across, x, False)
    assert not bk.layers.runs_as_tokenwise_conv(across)
    weights_only = QuantEinsumDense("abc,cd->abd", (None, 4), kernel_quantizer="ste_sign",
                                    kernel_constraint="weight_clip")
    weights_only(x)
    assert "Conv2D" not in _graph_ops(weights_only, x, False)
    assert not bk.layers.runs_as_tokenwise_conv(weights_only)
    flat = QuantDense(4, **BINARY)
    flat(x[:, 0])
    assert "Conv2D" not in _graph_ops(flat, x[:, 0], False) and not bk.layers.runs_as_tokenwise_conv(flat)


def test_projections_are_seen_by_quantized_layers_and_mu_annealing():
    inputs = keras.Input((5, 6))
    outputs = QuantMultiHeadAttention(2, 3, kernel_quantizer="bnn_pp", kernel_scale="channel")(inputs, inputs)
    model = keras.Model(inputs, outputs)
    found = quantized_layers(model)
    assert sorted(layer.name for layer in found) == ["attention_output", "key", "query", "value"]
    mus = annealed_quantizers(model)
    assert len(mus) == 4 and len({id(q.mu) for q in mus}) == 4


def test_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5, 6))
    h = QuantMultiHeadAttention(2, 3, input_quantizer="ste_sign", kernel_quantizer=bk.quantizers.BNNPlusPlus(mu=3.0),
                                kernel_scale="channel", name="mha")(inputs, inputs)
    outputs = QuantEinsumDense("abc,cd->abd", (None, 4), bias_axes="d", kernel_quantizer="biper",
                               kernel_scale="channel", name="proj")(h)
    model = keras.Model(inputs, outputs)
    _randomize(model)
    x = RNG.normal(size=(3, 5, 6)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.array(loaded(x)), np.array(model(x)))
    assert loaded.get_layer("mha").get_config() == model.get_layer("mha").get_config()
    proj = loaded.get_layer("proj")
    assert type(proj) is QuantEinsumDense and proj.kernel_scale == "channel"
    mus = [np.array(q.mu) for q in annealed_quantizers(model)]
    assert len(mus) == 4 and [np.array(q.mu) for q in annealed_quantizers(loaded)] == mus


def test_keras_quantization_and_lora_are_refused():
    layer = QuantEinsumDense("abc,cd->abd", (None, 4), kernel_quantizer="biper")
    layer.build((None, 3, 5))
    with pytest.raises(NotImplementedError, match="kernel_quantizer"):
        layer.quantize("int8")
    with pytest.raises(NotImplementedError, match="LoRA"):
        layer.enable_lora(2)
    with pytest.raises(ValueError, match="lora_rank"):
        QuantEinsumDense("abc,cd->abd", (None, 4), lora_rank=2)
    with pytest.raises(ValueError, match="int8_from_float32"):
        QuantEinsumDense("abc,cd->abd", (None, 4), dtype="int8_from_float32")
    dense = QuantDense(3, kernel_quantizer="biper")
    dense.build((None, 5))
    with pytest.raises(NotImplementedError, match="kernel_quantizer"):
        dense.quantize("int8")
    # Model.quantize quantizes the float layers and leaves the quantized ones as they are.
    model = keras.Sequential([keras.Input((3, 5)), keras.layers.Dense(5), layer])
    x = RNG.normal(size=(2, 3, 5)).astype("float32")
    before = np.array(layer(x))
    model.quantize("int8")
    assert model.layers[0].quantization_mode == "int8" and layer.quantization_mode is None
    np.testing.assert_array_equal(np.array(layer(x)), before)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="kernel_scale"):
        QuantEinsumDense("abc,cd->abd", (None, 4), kernel_scale="tensor")
    with pytest.raises(ValueError, match="kernel_scale"):
        QuantMultiHeadAttention(2, 3, kernel_scale="layer")
    with pytest.raises(ValueError, match="kernel_quantizer|identifier|Unknown"):
        QuantMultiHeadAttention(2, 3, kernel_quantizer="no_such_quantizer")


@pytest.mark.parametrize("make_quant,make_float", [
    (lambda: QuantEinsumDense("abc,cd->abd", (None, 4), bias_axes="d", input_quantizer="ste_sign",
                              kernel_quantizer="biper", kernel_scale="channel"),
     lambda: keras.layers.EinsumDense("abc,cd->abd", (None, 4), bias_axes="d")),
    (lambda: QuantMultiHeadAttention(2, 3, input_quantizer="ste_sign", kernel_quantizer="bnn_pp",
                                     kernel_scale="channel"),
     lambda: keras.layers.MultiHeadAttention(2, 3)),
])
def test_config_adds_only_quantization_keys_and_float_twin_carries_the_latent_weights(make_quant, make_float):
    from biper_keras.binarize import float_twin

    extra = set(make_quant().get_config()) - set(make_float().get_config())
    assert extra and extra <= set(bk.layers.QUANTIZATION_CONFIG_KEYS), extra
    inputs = keras.Input((5, 6))
    layer = make_quant()
    model = keras.Model(inputs, layer(inputs, inputs) if isinstance(layer, QuantMultiHeadAttention) else layer(inputs))
    _randomize(model)
    twin = float_twin(model)
    (float_layer,) = [l for l in twin.layers if l.weights]
    assert type(float_layer) is type(make_float())
    kernels = [w for w in layer.weights if w.path.endswith("/kernel") or w.path.endswith("/bias")]
    assert len(float_layer.weights) == len(kernels)
    for a, b in zip(float_layer.weights, kernels):
        np.testing.assert_array_equal(np.array(a), np.array(b))
