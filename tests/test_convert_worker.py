"""convert() on JAX/torch runs `biper_keras.convert._worker` in a TensorFlow child: error
types and warnings cross the process boundary; results survive to_dict/from_dict; corrupt
.keras files are reported for what they are; randomize_batch_norms removes the exact zeros
that default BatchNorm statistics put at binarizer inputs."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras.convert import (ConversionError, ConversionResult, LayerFusion, Parity, ParityError,
                                 _worker, load_model, randomize_batch_norms)
from biper_keras.convert.parity import _keras_outputs


def _small_bnn(dense_units=10):
    keras.utils.set_random_seed(0)
    binary = dict(padding="same", pad_values=1.0, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)  # (no starving-weights warning)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        bk.QuantConv2D(16, 3, name="bconv", **binary),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(dense_units),
    ])


# --- the result crosses the boundary as JSON ------------------------------------------


@pytest.fixture(scope="module")
def converted():
    model = randomize_batch_norms(_small_bnn(), 1)
    return bk.convert.convert(model)


def test_result_round_trips_through_json(converted):
    report = json.loads(json.dumps(converted.to_dict()))
    back = ConversionResult.from_dict(report, converted.flatbuffer)
    assert back == converted
    assert isinstance(back.layers[0], LayerFusion) and isinstance(back.layers[0].output_shape, tuple)
    assert isinstance(back.parity, Parity) and back.parity.passed
    with pytest.raises(ValueError, match="the flatbuffer has 3 bytes"):
        ConversionResult.from_dict(report, b"abc")


def test_repr_is_short_and_says_size_fusion_and_parity(converted):
    text = repr(converted)
    assert len(text) < 200 and "\\x" not in text, text
    assert text == (f"ConversionResult(target='arm', size={converted.size / 1024:.1f} KiB, LceBconv2d=1, "
                    "fused convs=1/1, parity=ok)")
    unchecked = ConversionResult(b"x" * 2048, "xcore", {}, [LayerFusion("a", "conv", (4,), False, "why")], 0)
    assert repr(unchecked) == ("ConversionResult(target='xcore', size=2.0 KiB, LceBconv2d=0, fused convs=0/1, "
                               "parity=not checked)")


# --- errors and warnings cross the boundary (subprocess stubbed: the worker runs here) ---


class _Custom(Exception):
    pass


def _run_worker_here(monkeypatch, fake_convert):
    """Makes `subprocess.run` in the worker's client run `_worker.main` in this process,
    with `fake_convert` as the child's `convert`; returns the commands it was given."""
    calls = []

    def run(args, env, capture_output, text):
        calls.append((args, env))
        assert args[:3] == [sys.executable, "-m", "biper_keras.convert._worker"]
        with monkeypatch.context() as m:
            m.setattr(bk.convert, "convert", fake_convert)
            code = _worker.main(args[3:])
        return subprocess.CompletedProcess(args, code, "", "")

    monkeypatch.setattr(_worker.subprocess, "run", run)
    return calls


@pytest.mark.parametrize("error,expected_type,expected_message", [
    (ParityError("LCE and Keras disagree"), ParityError, "LCE and Keras disagree"),
    (ConversionError("bconv (float kernel)"), ConversionError, "bconv (float kernel)"),
    (ValueError("Argument `x` bad"), ValueError, "Argument `x` bad"),
    (TypeError("`model` must be"), TypeError, "`model` must be"),
    (_Custom("odd"), ConversionError, "_Custom: odd"),
])
def test_child_error_arrives_as_the_same_type_with_its_warnings(monkeypatch, error, expected_type, expected_message):
    def fake_convert(model, **options):
        warnings.warn("before failing", RuntimeWarning)
        raise error

    _run_worker_here(monkeypatch, fake_convert)
    with pytest.warns(RuntimeWarning, match="before failing"):
        with pytest.raises(Exception) as caught:
            _worker.convert_in_subprocess(_small_bnn(), target="arm", strict=True)
    assert type(caught.value) is expected_type and str(caught.value) == expected_message


def test_successful_child_returns_its_result_options_and_warnings(monkeypatch):
    seen = {}
    fake = ConversionResult(b"TFL3 and more", "xcore", {"LceBconv2d": 1},
                            [LayerFusion("bconv", "conv", (8, 8, 16), True, node=2)], 1234,
                            Parity(3, 0.0, 1.5, 1.0, 0, True, "top-1 agreement >= 0.9"))

    def fake_convert(model, **options):
        seen.update(options, layers=[l.name for l in model.layers])
        warnings.warn("Model 'm' has no quantized layers: it converts to a float model.")
        return fake

    data = np.arange(3 * 8 * 8 * 3, dtype="float32").reshape(3, 8, 8, 3)
    calls = _run_worker_here(monkeypatch, fake_convert)
    model = _small_bnn()
    with pytest.warns(UserWarning, match="no quantized layers") as record:
        result = _worker.convert_in_subprocess(model, target="xcore", input_shape=(1, 8, 8, 3),
                                               verify=True, strict=False, data=data, min_top1=0.9)
    assert len(record) == 1
    assert result == fake
    np.testing.assert_array_equal(seen.pop("data"), data)
    assert seen.pop("layers") == [l.name for l in model.layers]
    assert seen == dict(target="xcore", input_shape=[1, 8, 8, 3], verify=True, strict=False, min_top1=0.9)
    (args, env), = calls
    assert env["KERAS_BACKEND"] == "tensorflow"


def test_child_that_dies_without_answering_is_a_conversion_error(monkeypatch):
    def run(args, env, capture_output, text):
        return subprocess.CompletedProcess(args, -11, "", "lots of logs\nFatal Python error: Segmentation fault\n")

    monkeypatch.setattr(_worker.subprocess, "run", run)
    with pytest.raises(ConversionError, match="exited with code -11 without a result: Fatal Python error: "
                                              "Segmentation fault$"):
        _worker.convert_in_subprocess(_small_bnn(), target="arm")


JAX_ROUND_TRIP = textwrap.dedent(
    """
    import warnings
    import keras
    import numpy as np
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    import biper_keras as bk
    from test_convert_worker import _small_bnn

    assert keras.backend.backend() == "jax"
    model = bk.convert.randomize_batch_norms(_small_bnn(), 2)
    x = np.random.default_rng(3).normal(size=(4, 8, 8, 3)).astype("float32")
    result = bk.convert.convert(model, data=x)
    assert result.ops["LceBconv2d"] == 1 and result.parity.passed, result.table()
    np.testing.assert_allclose(Interpreter(result.flatbuffer).predict(x), np.asarray(model(x)), rtol=1e-3, atol=1e-3)
    try:  # checked in the TensorFlow child (it needs the model's input): the same type arrives
        bk.convert.convert(model, input_shape=(1, 16, 16, 3))
    except ValueError as err:
        assert "does not fit the model's input (None, 8, 8, 3)" in str(err), err
        assert not isinstance(err, bk.convert.ConversionError), type(err)
    else:
        raise AssertionError("no ValueError")
    float_model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        float_result = bk.convert.convert(float_model)
    assert float_result.parity.passed and float_result.layers == []
    assert [str(w.message) for w in caught if "quantized" in str(w.message)] == [
        f"Model {float_model.name!r} has no quantized layers: it converts to a float model."], caught
    print("JAX-ROUND-TRIP-OK")
    """
)


@pytest.mark.slow
def test_jax_model_converts_in_a_tensorflow_child_with_errors_and_warnings():
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", JAX_ROUND_TRIP], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "JAX-ROUND-TRIP-OK" in done.stdout, done.stderr[-4000:]


def test_import_biper_keras_gives_convert_without_tensorflow():
    code = "import sys, biper_keras as bk; bk.convert.convert; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "KERAS_BACKEND": "jax"},
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


# --- a corrupt .keras file is named for what it is ----------------------------------------


@pytest.fixture(scope="module")
def good_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "good.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    return path


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_corrupt_keras_files_are_named_for_what_they_are(tmp_path, good_keras):
    whole = good_keras.read_bytes()
    cases = [
        (b"", r"is empty \(0 bytes\): not a \.keras archive"),
        (b"hello world", r"is not a \.keras archive \(a zip file\); it starts with b'hello wo'"),
        (whole[:len(whole) // 2], rf"is truncated: it starts as a zip archive but has no end record \({len(whole) // 2} bytes"),
        (b"\x89HDF\r\n\x1a\n" + bytes(100), r"is an HDF5 file, not a \.keras zip archive \(rename it to \.h5"),
    ]
    for i, (content, message) in enumerate(cases):
        path = _write(tmp_path, f"bad{i}.keras", content)
        with pytest.raises(ValueError, match=f"^{path} {message}"):
            load_model(path)
        with pytest.raises(ValueError, match=message):
            bk.convert.convert(str(path))
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.keras"):
        load_model(tmp_path / "missing.keras")


def test_zip_that_is_not_a_keras_model(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match="is a zip archive but not a .keras model: it has no config.json or "
                                         "model.weights.h5"):
        load_model(path)


def test_archive_from_another_keras_version_says_so(tmp_path, good_keras):
    path = tmp_path / "future.keras"
    with zipfile.ZipFile(good_keras) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "metadata.json":
                data = json.dumps({"keras_version": "9.0.0"}).encode()
            if name == "config.json":
                data = json.dumps({"class_name": "HoloModel", "config": {}, "module": "keras9"}).encode()
            dst.writestr(name, data)
    with pytest.raises(ValueError, match=rf"^{path} was written by Keras 9.0.0 and this Keras "
                                         rf"{keras.__version__} cannot load it: "):
        load_model(path)


def test_good_keras_file_loads(good_keras):
    model = load_model(good_keras)
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(model(x), keras.models.load_model(good_keras)(x))


# --- randomize_batch_norms: why parity checks of untrained models need it ---------------


def test_default_batch_norm_gives_exact_zeros_at_binarizer_inputs_and_randomizing_removes_them():
    keras.utils.set_random_seed(0)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        bk.QuantConv2D(16, 3, **binary),  # sums of 3 * 3 * 4 = 36 terms +-1: even integers, 0 among them
        keras.layers.BatchNormalization(),
        bk.QuantConv2D(16, 3, **binary),
    ])
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 4)).astype("float32")
    # The first binarizer sees x (never 0); the second sees those integers / sqrt(1 + eps).
    assert _keras_outputs(model, x)[1] > 0
    randomize_batch_norms(model, np.random.default_rng(1))
    assert _keras_outputs(model, x)[1] == 0


def _nested_batch_norms():
    inner = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(scale=False, name="inner_bn")])
    x = keras.Input((4, 4, 2))
    return keras.Model(x, keras.layers.BatchNormalization(name="outer_bn")(inner(x))), inner


def test_randomize_batch_norms_reaches_nested_models_and_layers_without_scale():
    model, inner = _nested_batch_norms()
    assert randomize_batch_norms(model, 5) is model
    inner_bn, outer_bn = inner.get_layer("inner_bn"), model.get_layer("outer_bn")
    assert inner_bn.gamma is None
    for bn in (inner_bn, outer_bn):
        assert 0.5 <= np.min(bn.moving_variance) and np.max(bn.moving_variance) <= 2.0
        assert np.all(np.asarray(bn.moving_mean) != 0) and np.all(np.asarray(bn.beta) != 0)
    assert np.all((0.5 <= np.asarray(outer_bn.gamma)) & (np.asarray(outer_bn.gamma) <= 1.5))
    again, _ = _nested_batch_norms()
    randomize_batch_norms(again, np.random.default_rng(5))  # a seed and its Generator agree
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
