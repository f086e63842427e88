"""Bad arguments to `convert` (library and CLI) are refused at once, by name, before any
conversion; parity failure has its own switch (exit 6 also with --allow-unfused)."""

import math

import keras
import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli_here

import biper_keras as bk
from biper_keras.cli import EXIT_INPUT, EXIT_IO, EXIT_PARITY
from biper_keras.convert import ConversionError, convert, flatbuffer, interpreter, load_model


class _NoConversion:
    """Stands in for the converter process: any conversion fails the test."""

    def start(self):
        pass

    def convert(self, frozen, target):
        raise AssertionError(f"converted {frozen.name!r} although an argument was bad")


@pytest.fixture
def no_conversion(monkeypatch):
    monkeypatch.setattr(flatbuffer, "_converter", _NoConversion())


def _binary_model(shape=(8, 8, 3), name="tiny"):
    x = keras.Input(shape)
    h = bk.QuantConv2D(8, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                       kernel_constraint="weight_clip", use_bias=False, name="bconv")(x)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4, name="head")(h), name=name)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return _binary_model()


@pytest.mark.parametrize("kwargs,error,message", [
    ({"min_top1": "0.9"}, TypeError, "Argument `min_top1` must be a number between 0 and 1. Received: '0.9' (str)"),
    ({"min_top1": True}, TypeError, "Argument `min_top1` must be a number between 0 and 1. Received: True (bool)"),
    ({"min_top1": 2}, ValueError, "Argument `min_top1` must be a number between 0 and 1. Received: 2."),
    ({"min_top1": math.nan}, ValueError, "Argument `min_top1` must be a number between 0 and 1. Received: nan."),
    ({"input_shape": (0, 32, 3)}, ValueError, "Argument `input_shape` must be a tuple of sizes > 0, e.g. "
                                              "(1, 224, 224, 3) or (224, 224, 3). Received: (0, 32, 3)."),
    ({"input_shape": "1,8,8,3"}, TypeError, "Argument `input_shape` must be a tuple of sizes > 0"),
    ({"input_shape": (1, 8.0, 8, 3)}, TypeError, "Received: (1, 8.0, 8, 3) (tuple)"),
    ({"input_shape": (1, 16, 16, 3)}, ValueError, "Argument `input_shape` (1, 16, 16, 3) does not fit the model's "
                                                  "input (None, 8, 8, 3): dimension 1 is 16, the model fixes it to 8."),
    ({"input_shape": (8, 3)}, ValueError, "does not fit the model's input (None, 8, 8, 3): it takes 3 sizes "
                                          "(or 4 with the batch size)"),
    ({"verify": "yes"}, TypeError, "Argument `verify` must be True or False. Received: 'yes' (str)"),
    ({"strict": None}, TypeError, "Argument `strict` must be True or False. Received: None (NoneType)"),
    ({"target": "x86"}, ValueError, "Argument `target` must be 'arm' or 'xcore'. Received: 'x86'."),
    ({"on_mismatch": "ignore"}, ValueError, "Argument `on_mismatch` must be None, 'raise' or 'report'"),
    ({"data": np.zeros((2, 16, 16, 3))}, ValueError, "Argument `data` must have shape (samples, 8, 8, 3) for this "
                                                     "model's input. Received: shape (2, 16, 16, 3)."),
    ({"data": [["a"]]}, TypeError, "Argument `data` must be a numeric array of inputs"),
    ({"data": np.zeros((2, 8, 8, 3)), "verify": False}, ValueError, "Argument `data` is only used by the parity "
                                                                    "check, and verify=False turns it off"),
])
def test_bad_options_are_refused_by_name_before_converting(no_conversion, model, kwargs, error, message):
    with pytest.raises(error) as caught:
        convert(model, **kwargs)
    assert message in str(caught.value)
    assert not isinstance(caught.value, ConversionError)


def test_a_model_where_a_path_is_meant_and_the_reverse(no_conversion, model, tmp_path):
    with pytest.raises(TypeError, match=r"Argument `model` must be a Keras model \(Keras 3 or tf_keras\) or the "
                                        r"path of a .keras file. Received: an object of type int"):
        convert(42)
    with pytest.raises(FileNotFoundError, match="Received: 'resnet20', and there is no such file"):
        convert("resnet20")
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3")
    with pytest.raises(ValueError, match="a TFLite flatbuffer \\(already converted"):
        convert(str(tflite))
    with pytest.raises(TypeError, match=r"Argument `path` must be the path of a .keras file. Received: an object of "
                                        r"type Functional \(a model is converted as it is: pass it to `convert`\)"):
        load_model(model)
    with pytest.raises(ValueError, match="model 'unbuilt' is not built"):
        convert(keras.Sequential([keras.layers.Dense(2)], name="unbuilt"))


def test_nan_weights_are_bad_input_exit_3_and_nothing_is_written(no_conversion, capsys, tmp_path):
    broken = _binary_model(name="diverged")
    broken.get_layer("head").kernel.assign(np.full((8, 4), np.nan, "float32"))
    path, out = tmp_path / "nan.keras", tmp_path / "nan.tflite"
    broken.save(path)
    with pytest.raises(ValueError, match="variable 'head/kernel' contains NaN or infinite values"):
        convert(broken)
    result = run_cli_here(capsys, "convert", str(path), "-o", str(out))
    assert_one_line_error(result, EXIT_INPUT, "Argument `model`: variable 'head/kernel' contains NaN")
    assert not out.exists()


def test_cli_input_shape_that_does_not_fit_and_a_folder_as_output(no_conversion, capsys, tmp_path, model):
    path, out = tmp_path / "m.keras", tmp_path / "m.tflite"
    model.save(path)
    result = run_cli_here(capsys, "convert", str(path), "--input-shape", "1,16,16,3", "-o", str(out))
    assert_one_line_error(result, EXIT_INPUT, "dimension 1 is 16, the model fixes it to 8")
    assert "Exception encountered" not in result.stderr and not out.exists()
    folder = tmp_path / "out"
    folder.mkdir()
    assert_one_line_error(run_cli_here(capsys, "convert", str(path), "-o", str(folder)), EXIT_IO, "is a folder")
    assert list(folder.iterdir()) == []


class _NegatingInterpreter:
    """LCE's interpreter with its outputs negated: a planted disagreement with Keras."""

    def __init__(self, flatbuffer):
        from larq_compute_engine.tflite.python.interpreter import Interpreter

        self._real = Interpreter(flatbuffer)
        self.input_shapes, self.input_types = self._real.input_shapes, self._real.input_types

    def predict(self, x):
        return -np.asarray(self._real.predict(x))


def test_parity_failure_has_its_own_switch(monkeypatch, capsys, tmp_path, model):
    path, out = tmp_path / "m.keras", tmp_path / "m.tflite"
    model.save(path)
    monkeypatch.setattr(interpreter, "_interpreter", _NegatingInterpreter)
    for flags in ([], ["--allow-unfused"]):
        result = run_cli_here(capsys, "convert", str(path), "-o", str(out), *flags)
        assert_one_line_error(result, EXIT_PARITY, "LCE and Keras disagree")
        assert not out.exists()
    result = run_cli_here(capsys, "convert", str(path), "-o", str(out), "--allow-unfused", "--allow-mismatch")
    assert result.returncode == 0 and "FAILED" in result.stdout and out.exists()
    report = convert(model, strict=True, on_mismatch="report")
    assert not report.parity.passed and report.parity.top1_agreement < 1.0
