"""Transformers through LCE: a functional ViT written with Keras layers (custom patch
layer, MultiHeadAttention, LayerNormalization, gelu MLPs) converts to builtin ops only;
its W1A1 version runs every token-wise projection as LceBconv2d; its W1A32 version's
binary weights are stored as int8 with outputs identical to the float file's."""

import warnings

import keras
import numpy as np
import pytest
from helpers import run_cli_here
from keras import ops
from larq_compute_engine.tflite.python.interpreter import Interpreter

import biper_keras as bk
from biper_keras.convert import ConversionError, convert, graph

DEPTH, DIM, HEADS, MLP = 2, 32, 2, 64
PROJECTIONS = [f"{name}{block}" for block in range(DEPTH) for name in ("query", "key", "value", "out", "mlp1_", "mlp2_")]


@keras.saving.register_keras_serializable(package="test_convert_vit")
class Patches(keras.layers.Layer):
    """A user's own patch layer: non-overlapping 4x4 patches as tokens (batch, 16, 48)."""

    def call(self, images):
        patches = ops.image.extract_patches(images, size=4)
        return ops.reshape(patches, (-1, patches.shape[1] * patches.shape[2], patches.shape[3]))


@keras.saving.register_keras_serializable(package="test_convert_vit")
class AddPosition(keras.layers.Layer):
    def build(self, input_shape):
        self.position = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal")

    def call(self, tokens):
        return tokens + self.position


def _vit(binary_inputs, binary_weights=True, gelu="gelu"):
    keras.utils.set_random_seed(0)
    q = {}
    if binary_weights:
        q = dict(kernel_quantizer="ste_sign", kernel_scale="channel", kernel_scale_initializer="random_uniform",
                 input_quantizer="ste_sign" if binary_inputs else None)
    attention = bk.layers.QuantMultiHeadAttention if binary_weights else keras.layers.MultiHeadAttention
    dense = bk.layers.QuantDense if binary_weights else keras.layers.Dense
    x = keras.Input((16, 16, 3))
    h = AddPosition()(keras.layers.Dense(DIM, name="embed")(Patches()(x)))
    for b in range(DEPTH):
        a = keras.layers.LayerNormalization()(h)
        mha = attention(HEADS, DIM // HEADS, name=f"attn{b}", **q)
        h = keras.layers.Add()([h, mha(a, a)])
        m = keras.layers.LayerNormalization()(h)
        m = dense(MLP, activation=gelu, name=f"mlp1_{b}", **q)(m)
        h = keras.layers.Add()([h, dense(DIM, name=f"mlp2_{b}", **q)(m)])
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(h))
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="head")(h))
    # Trained-like biases and norms: with zero biases a binary projection's integer sum
    # of 0 becomes an exact 0 at the next binarizer, whose sign float rounding decides.
    rng = np.random.default_rng(1)
    for w in model.weights:
        if w.path.endswith(("bias", "beta")):
            w.assign(rng.normal(0.0, 0.5, w.shape))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape))
    return model


def _short(name):
    """'attn0/query' -> 'query0', 'attn1/attention_output' -> 'out1', 'mlp1_0' -> 'mlp1_0'."""
    if "/" not in name:
        return name
    block, projection = name.split("/")
    return {"attention_output": "out"}.get(projection, projection) + block.removeprefix("attn")


X = np.random.default_rng(2).normal(size=(4, 16, 16, 3)).astype("float32")


@pytest.fixture(scope="module")
def float_vit():
    model = _vit(binary_inputs=False, binary_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no quantized layers"
        return model, convert(model, data=X)


@pytest.fixture(scope="module")
def w1a1():
    model = _vit(binary_inputs=True)
    return model, convert(model, data=X)


@pytest.fixture(scope="module")
def w1a32():
    model = _vit(binary_inputs=False)
    return model, convert(model, data=X), convert(model, data=X, weights="int8")


def test_a_keras_vit_converts_to_builtin_ops_and_matches_keras(float_vit):
    model, result = float_vit
    custom = [op for op in result.ops if not op.isupper()]  # TFLite builtins are upper case
    assert custom == [], result.ops
    assert result.ops["GELU"] == DEPTH and result.ops["SOFTMAX"] == DEPTH + 1
    got = Interpreter(result.flatbuffer).predict(X)
    np.testing.assert_allclose(got, np.asarray(model(X)), atol=2e-6)
    assert result.parity.passed and result.parity.top1_agreement == 1.0


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_becomes_the_builtin_gelu_and_the_exact_one_needs_the_rewrite(monkeypatch, approximate):
    x = keras.Input((4, 8))
    model = keras.Model(x, keras.layers.Dense(8, activation=lambda t: keras.activations.gelu(t, approximate))(x))
    data = np.random.default_rng(0).normal(0.0, 3.0, size=(2, 4, 8)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no quantized layers"
        result = convert(model, data=data)
        assert result.ops == {"FULLY_CONNECTED": 1, "GELU": 1}
        np.testing.assert_allclose(Interpreter(result.flatbuffer).predict(data), np.asarray(model(data)), atol=1e-5)
        monkeypatch.setattr(graph, "rewrite_exact_gelu", lambda graph_def: [])
        if approximate:  # the tanh form needs no rewrite
            assert convert(model, data=data).ops == {"FULLY_CONNECTED": 1, "GELU": 1}
        else:
            with pytest.raises(ConversionError, match="Erfc"):
                convert(model, data=data)


def test_w1a1_vit_runs_every_projection_as_lce_bconv2d_and_matches_keras(w1a1):
    model, result = w1a1
    assert sorted(map(_short, result.fused_projections)) == sorted(PROJECTIONS)
    assert result.ops["LceBconv2d"] == len(PROJECTIONS) and not result.unfused
    assert {f.runs for f in result.layers} == {"LceBconv2d"}
    assert f"token-wise projections as LceBconv2d ({len(PROJECTIONS)})" in result.table()
    got = Interpreter(result.flatbuffer).predict(X)
    np.testing.assert_allclose(got, np.asarray(model(X)), atol=1e-5)
    assert result.parity.passed and result.parity.top1_agreement == 1.0


def test_the_users_vit_after_binarize_runs_every_projection_as_lce_bconv2d(float_vit):
    """The issue's case: a keras.io-style functional ViT (exact gelu MLPs) binarized with
    `binarize()` used to convert into a file that failed to prepare (Erfc)."""
    from biper_keras.binarize import binarize

    model, _ = float_vit
    binary, _ = binarize(model, "ste_sign", input_quantizer="ste_sign")  # embed and head stay float
    result = convert(binary, data=X)
    assert sorted(map(_short, result.fused_projections)) == sorted(PROJECTIONS)
    assert result.ops["LceBconv2d"] == len(PROJECTIONS) and result.ops["GELU"] == DEPTH
    assert not [op for op in result.ops if not op.isupper() and not op.startswith("Lce")]
    np.testing.assert_allclose(Interpreter(result.flatbuffer).predict(X), np.asarray(binary(X)), atol=1e-5)
    assert result.parity.passed and result.parity.top1_agreement == 1.0


def test_w1a32_int8_weights_equal_the_float_file_and_keras_at_a_quarter_of_the_bytes(w1a32):
    model, floats, int8 = w1a32
    assert {f.runs for f in floats.layers} == {"float"} and {f.runs for f in int8.layers} == {"int8"}
    assert sorted(_short(f.layer) for f in int8.layers) == sorted(PROJECTIONS)
    assert all(f.reason.startswith("binary weights, float inputs (W1A32)") for f in int8.layers if f.kind == "projection")
    assert int8.ops["DEQUANTIZE"] == len(PROJECTIONS) and "DEQUANTIZE" not in floats.ops
    np.testing.assert_array_equal(Interpreter(int8.flatbuffer).predict(X), Interpreter(floats.flatbuffer).predict(X))
    np.testing.assert_allclose(Interpreter(int8.flatbuffer).predict(X), np.asarray(model(X)), atol=1e-5)
    assert int8.parity.passed and int8.parity.top1_agreement == 1.0
    binary_weights = sum(int(np.prod(l.latent_kernel.shape)) for l in bk.layers.quantized_layers(model)
                         if hasattr(l, "latent_kernel"))
    assert floats.size - int8.size >= 2.5 * binary_weights  # 3 of every 4 bytes, less the DEQUANTIZE ops


def test_cli_weights_int8_reports_what_runs_as_int8(capsys, tmp_path, w1a32):
    import json

    model, _, int8 = w1a32
    path, out = tmp_path / "vit.keras", tmp_path / "vit.tflite"
    model.save(path)
    result = run_cli_here(capsys, "convert", str(path), "--weights", "int8", "--json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {row["runs"] for row in report["layers"]} == {"int8"} and report["size_bytes"] == out.stat().st_size
    assert abs(report["size_bytes"] - int8.size) < 1024
