"""A converter that dies (SIGABRT, SIGSEGV) or fails is a `ConversionError` naming the
model, the converter's last words and what to do, never a dead Python process."""

import os
import sys

import keras
import pytest

import biper_keras as bk
from biper_keras.convert import ConversionError, convert, flatbuffer

CRASHING = os.path.join(os.path.dirname(__file__), "crashing_tflite_converter.py")


def _crashing(how):
    return flatbuffer.Converter([sys.executable, CRASHING, flatbuffer.CHILD, how])


@pytest.fixture(scope="module")
def model():
    x = keras.Input((8, 8, 4))
    h = bk.QuantConv2D(8, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                       kernel_constraint="weight_clip", use_bias=False)(x)
    return keras.Model(x, h, name="dorefa_like")


@pytest.mark.parametrize("how,signal_name,words,hint", [
    ("abort", "SIGABRT", "what():  cannot create std::vector larger than max_size()",
     "too large for a TFLite flatbuffer (2 GB at most)"),
    ("segv", "SIGSEGV", "error: 'tfl.conv_2d' op something went wrong in a pass", ""),
])
def test_a_native_crash_is_a_conversion_error_and_the_next_conversion_restarts(monkeypatch, model, how,
                                                                                signal_name, words, hint):
    converter = _crashing(how)
    monkeypatch.setattr(flatbuffer, "_converter", converter)
    for attempt in range(2):  # the second conversion starts a new child, which dies again
        with pytest.raises(ConversionError) as caught:
            convert(model)
        message = str(caught.value)
        assert message.startswith(f"LCE's converter crashed on model 'dorefa_like' (the converter process was "
                                  f"killed by {signal_name}; your process is fine): ")
        assert words in message and hint in message
        assert "Stack dump" not in message and "PLEASE submit" not in message and "0x00007f" not in message
        assert converter._process is None
    converter.stop()


def test_a_converter_error_names_the_unsupported_op(monkeypatch, model):
    converter = _crashing("raise")
    monkeypatch.setattr(flatbuffer, "_converter", converter)
    with pytest.raises(ConversionError, match=r"LCE's converter failed on model 'dorefa_like': RuntimeError: .*"
                                              r"Unsupported op: TFLite has no builtin for TensorFlow op tf\.Erf"):
        convert(model, verify=False)
    assert converter._process.poll() is None  # an exception, not a crash: the child serves on
    converter.stop()


def test_cli_reports_a_crash_as_one_line_with_exit_5_and_writes_nothing(monkeypatch, capsys, tmp_path, model):
    from helpers import assert_one_line_error, run_cli_here

    from biper_keras.cli import EXIT_NOT_FUSED

    monkeypatch.setattr(flatbuffer, "_converter", _crashing("abort"))
    path, out = tmp_path / "m.keras", tmp_path / "m.tflite"
    model.save(path)
    result = run_cli_here(capsys, "convert", str(path), "-o", str(out))
    assert_one_line_error(result, EXIT_NOT_FUSED, "crashed on model 'dorefa_like'")
    assert "SIGABRT" in result.stderr and not out.exists()
    flatbuffer._converter.stop()
