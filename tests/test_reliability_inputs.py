"""Bad input, round two (docs/reliability.md): library arguments of the wrong type or
kind, image folders with broken or unusual files, and messages that named the wrong
cause. Each case: the error type or exit code, the one line, nothing written."""

import hashlib
import io
import json
import pathlib
import re
import struct
import zlib

import keras
import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli_here
from shared_processes import LARQ_SCRIPTS, script, script_output

import biper_keras as bk
from biper_keras import data as data_lib

TRAIN = ("train", "--quantizer", "bnn", "--epochs", "1", "--batch-size", "4", "--no-convert")


def _tree(folder):
    """{relative path: sha256} of every file under `folder` (to prove nothing changed)."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- library arguments -----------------------------------------------------------------


@pytest.mark.parametrize("make, error, text", [
    (lambda: bk.QuantConv2D(filters="64", kernel_size=3), TypeError, "`filters` must be an integer > 0. Received: filters='64' (type str)"),
    (lambda: bk.QuantConv2D("64", 3), TypeError, "`filters` must be an integer > 0. Received: filters='64'"),
    (lambda: bk.QuantConv2D(True, 3), TypeError, "`filters` must be an integer > 0. Received: filters=True (type bool)"),
    (lambda: bk.QuantConv2D(2.5, 3), TypeError, "`filters` must be an integer > 0. Received: filters=2.5 (type float)"),
    (lambda: bk.QuantConv2D(0, 3), ValueError, "`filters` must be an integer > 0. Received: filters=0."),
    (lambda: bk.QuantConv2D(8, "3"), TypeError, "`kernel_size` must be an integer > 0 or a tuple of them. Received: kernel_size='3'"),
    (lambda: bk.QuantConv2D(8, (3, "3")), TypeError, "`kernel_size` must be an integer > 0 or a tuple of them"),
    (lambda: bk.QuantConv2D(8, 3, strides=0), ValueError, "`strides` must be an integer > 0 or a tuple of them. Received: strides=0."),
    (lambda: bk.QuantConv2D(8, 3, dilation_rate="2"), TypeError, "`dilation_rate` must be an integer > 0"),
    (lambda: bk.QuantConv2D(8, 3, groups="2"), TypeError, "`groups` must be an integer > 0. Received: groups='2'"),
    (lambda: bk.QuantDense("10"), TypeError, "`units` must be an integer > 0. Received: units='10'"),
    (lambda: bk.QuantDense(units=-1), ValueError, "`units` must be an integer > 0. Received: units=-1."),
    (lambda: bk.layers.QuantConv1D("8", 3), TypeError, "`filters` must be an integer > 0. Received: filters='8'"),
    (lambda: bk.layers.QuantDepthwiseConv2D("3"), TypeError, "`kernel_size` must be an integer > 0 or a tuple of them. Received: kernel_size='3'"),
    (lambda: bk.layers.QuantDepthwiseConv2D(3, depth_multiplier="2"), TypeError, "`depth_multiplier` must be an integer > 0"),
    (lambda: bk.layers.QuantSeparableConv2D(8.0, 3), TypeError, "`filters` must be an integer > 0. Received: filters=8.0"),
])
def test_quantized_layers_name_a_bad_size_argument(make, error, text):
    with pytest.raises(error) as raised:
        make()
    assert type(raised.value) is error and text in str(raised.value), str(raised.value)


def test_size_arguments_that_are_fine_still_are():
    # NumPy integers and lists (a config read back from JSON) are sizes too.
    layer = bk.QuantConv2D(np.int64(4), [3, 3], strides=(1, np.int32(1)), kernel_quantizer="ste_sign",
                           kernel_constraint="weight_clip")
    assert layer.filters == 4 and layer.kernel_size == (3, 3)
    again = bk.QuantConv2D.from_config(layer.get_config())
    assert again(np.zeros((1, 5, 5, 2), "float32")).shape == (1, 3, 3, 4)
    assert bk.QuantDense(3)(np.zeros((2, 5), "float32")).shape == (2, 3)


def test_biper_refuses_an_omega_float32_cannot_resolve():
    from biper_keras.quantizers.core import MAX_OMEGA
    from biper_keras.training import Recipe

    assert MAX_OMEGA == 2.0**24
    for omega in (2.0**24 + 2, 1e30, 1e38):
        with pytest.raises(ValueError, match=r"`omega` must be at most 2\*\*24 = 16777216.*Received: omega=" + re.escape(f"{omega!r}.")):
            bk.BiPer(omega=omega)
        with pytest.raises(ValueError, match=r"`omega` must be at most 2\*\*24"):
            Recipe(omega=omega).validate()  # the CLI's --omega, before any data is read
    # The bound's claim: at omega = 2**24 the product overflows float32 only past
    # |w| = 3.4e38 / 2**24 = 2.03e31, so every weight below it binarizes to exactly +/-1
    # (omega=1e30 gave NaN for w = 1e9: 1e39 is inf in float32).
    w = np.array([2.0e31, -2.0e31, 1e9, -1e9, 1.0, -0.3, 3e-8], "float32")
    assert np.all(np.isfinite(np.float32(MAX_OMEGA) * w))
    assert set(np.abs(np.asarray(bk.BiPer(omega=MAX_OMEGA)(w))).tolist()) == {1.0}


def test_binarize_refuses_a_file_name_and_an_unbuilt_sequential():
    from biper_keras import binarize

    with pytest.raises(TypeError, match=r"`model` must be a Keras 3 model .*Received: model='m.keras', a file name: "
                                        r"load it first"):
        binarize("m.keras")
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3),
                                keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`model` must be built .*Sequential 'sequential\w*' with no input shape yet: "
                                         r"start it with keras.Input\(shape\), or call model.build"):
        binarize(unbuilt)  # was IndexError inside the weight copy
    unbuilt.build((None, 8, 8, 3))  # what the message says to do
    _, report = binarize(unbuilt)
    assert report.binarized == [unbuilt.layers[1].name, unbuilt.layers[2].name]  # first and last kept


def test_the_larq_bridge_names_its_direction_without_larq():
    # The checks come before Larq is imported: they hold in a plain Keras 3 process.
    from biper_keras.larq_interop import from_larq, to_larq

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)], name="k3")
    with pytest.raises(TypeError, match=r"`from_larq` \(Larq/tf_keras -> Keras 3\) takes a Larq/tf_keras model\. "
                                        r"Received: a Keras 3 model, Sequential 'k3': `to_larq` converts in that direction"):
        from_larq(model)
    with pytest.raises(TypeError, match=r"`to_larq` \(Keras 3 -> Larq/tf_keras\) takes a Keras 3 \(biper_keras\) model "
                                        r"object, not a file name\. Received: model='m.keras'\. Load it first: "
                                        r"keras.models.load_model"):
        to_larq("m.keras")
    with pytest.raises(TypeError, match=r"`from_larq` .* not a file name\. Received: model=PosixPath\('m.h5'\)\. "
                                        r"Load it first: tf.keras.models.load_model"):
        from_larq(pathlib.Path("m.h5"))
    with pytest.raises(ValueError, match=r"`to_larq` \(Keras 3 -> Larq/tf_keras\) .* with known inputs\. Received: "
                                         r"Sequential 'late', not built yet"):
        to_larq(keras.Sequential([keras.layers.Dense(2)], name="late"))
    with pytest.raises(TypeError, match=r"`to_larq` .* Received: model of type builtins.NoneType"):
        to_larq(None)


LARQ_SCRIPTS["reliability_bridge_arguments"] = script("reliability_inputs_bridge_arguments.py")


def test_the_larq_bridge_names_its_direction_with_larq(larq_results):
    found = json.loads(script_output(larq_results[1], "reliability_bridge_arguments"))
    assert found["to_larq(larq model)"] == [
        "TypeError", "`to_larq` (Keras 3 -> Larq/tf_keras) takes a Keras 3 (biper_keras) model. Received: a tf_keras "
        "(Larq's side) model, Sequential 'from_zoo': `from_larq` converts in that direction."]
    assert found["from_larq(unbuilt)"][0] == "ValueError"
    assert found["from_larq(unbuilt)"][1].startswith(
        "`from_larq` (Larq/tf_keras -> Keras 3) takes a Larq/tf_keras model with known inputs. Received: Sequential "
        "'unbuilt', not built yet (no input shape)")
    assert found["from_larq(str)"][0] == "TypeError" and "Load it first: tf.keras.models.load_model(path)" in found["from_larq(str)"][1]
    assert found["built"] == "keras"  # the built one converts to Keras 3


# --- image folders ------------------------------------------------------------------


def _folder(root, size=(8, 8), per_class=3, fmt="png", classes=("ant", "bee")):
    rng = np.random.default_rng(0)
    from PIL import Image

    for split in ("train", "test"):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.{fmt}")
    return root


def _png_bomb(width, height):
    """A valid PNG header declaring width x height grey pixels, with one compressed row
    of data: a small file that would decode to width * height bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


def _jpeg_declaring(width, height):
    """A small real JPEG with its start-of-frame size rewritten (a JPEG bomb's header)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _train_stub(monkeypatch, calls):
    """`training.train` replaced by a recorder: these tests are about what happens before
    training starts (the listing), not the training."""
    from biper_keras import training

    def recorded(recipe, data, out, **kwargs):
        calls.append(data)
        return {}

    monkeypatch.setattr(training, "train", recorded)


def test_a_truncated_jpeg_is_skipped_with_one_warning_line_before_training(tmp_path, capsys, monkeypatch):
    root = _folder(tmp_path / "data", fmt="jpg")
    torn = root / "train" / "ant" / "1.jpg"
    torn.write_bytes(torn.read_bytes()[:200])  # a valid header, no end marker
    calls = []
    _train_stub(monkeypatch, calls)
    result = run_cli_here(capsys, *TRAIN, "--data", str(root), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings == [f"biper-keras: warning: {root / 'train'}: skipped 1 image file(s) that would not decode "
                        f"(first: {torn}: truncated JPEG (no end-of-image marker))."]  # one line, no source line
    assert len(calls) == 1 and calls[0].train_size == 5  # the rest trains
    # In the library the warning points at the caller, not at a line of the package.
    with pytest.warns(UserWarning, match=r"truncated JPEG") as caught:
        data_lib.image_datasets(root, augment=None)
    assert [w.filename for w in caught] == [__file__]


def test_decompression_bombs_are_skipped_by_their_header(tmp_path, capsys, monkeypatch):
    from PIL import Image

    root = _folder(tmp_path / "data", per_class=2)
    bombs = {root / "train" / "ant" / "bomb.png": _png_bomb(100_000, 100_000),  # 10^10 pixels in a small file
             root / "train" / "bee" / "bomb.jpg": _jpeg_declaring(60_000, 60_000)}
    for path, content in bombs.items():
        path.write_bytes(content)
        assert path.stat().st_size < 2000
        with pytest.raises(Image.DecompressionBombError):  # Pillow's own verdict on the same file
            Image.open(path)
    calls = []
    _train_stub(monkeypatch, calls)
    result = run_cli_here(capsys, *TRAIN, "--data", str(root), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"biper-keras: warning: {root / 'train'}: skipped 2 image file(s) that would not decode (first: "
                     f"{root / 'train' / 'ant' / 'bomb.png'}: 100000x100000 pixels, over the decompression-bomb limit "
                     f"of {Image.MAX_IMAGE_PIXELS} pixels (Pillow's Image.MAX_IMAGE_PIXELS))."]
    assert calls[0].train_size == 4
    # The limit is Pillow's setting at the time of the call: lowered, an 8x8 image is over it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 63)
    with pytest.raises(ValueError, match=r"Class folder .*ant has no images to read: 3 file\(s\) would not decode "
                                         r"\(first: .*0\.png: 8x8 pixels, over the decompression-bomb limit of 63 pixels"):
        data_lib.image_datasets(root, augment=None)


def test_the_jpeg_header_size_is_the_decoded_size(tmp_path):
    # Independent check of the header walk: PIL's size for baseline and progressive
    # JPEGs, with and without a large EXIF segment before the frame header.
    from PIL import Image

    rng = np.random.default_rng(1)
    for i, (h, w, options) in enumerate([(7, 13, {}), (31, 5, {"progressive": True}),
                                         (16, 40, {"exif": b"Exif\0\0" + bytes(30_000)}), (9, 9, {"quality": 5})]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, **options)
        for first in (16, data_lib._HEAD):  # the walk crosses what was read first, or not
            with open(path, "rb") as f:
                assert data_lib._jpeg_size(f.read(first), f) == Image.open(path).size == (w, h)
        assert data_lib._image_problem(path, Image.MAX_IMAGE_PIXELS) is None


def test_a_class_of_webp_files_names_the_format_and_the_supported_ones(tmp_path, capsys):
    from PIL import Image

    root = _folder(tmp_path / "data")
    for f in (root / "train" / "bee").iterdir():
        f.unlink()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "bee" / f"{i}.webp")
    out = tmp_path / "run"
    assert_one_line_error(run_cli_here(capsys, *TRAIN, "--data", str(root), "--out", str(out)), 3,
                          f"Class folder {root / 'train' / 'bee'} has no images to read: it holds 3 .webp file(s), a "
                          "format not read here; convert them to one of JPEG, PNG, BMP, GIF (.jpg .jpeg .png .bmp .gif)")
    assert not out.exists()
    # Beside readable images they are counted in the one warning, not silently dropped.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "bee" / "ok.png")
    with pytest.warns(UserWarning, match=r"ignored 3 file\(s\) in a format not read here \(3 \.webp; read: JPEG"):
        assert data_lib.image_datasets(root, augment=None).train_size == 4


def test_images_too_small_for_the_model_fail_before_anything_is_written(tmp_path, capsys):
    root = _folder(tmp_path / "data", size=(1, 1))
    out = tmp_path / "run"
    result = run_cli_here(capsys, *TRAIN, "--data", str(root), "--out", str(out))
    assert_one_line_error(result, 3, "Images of 1x1 pixels (the size of ")
    assert "are too small for model 'resnet20' (built for 32x32): Add fails: " in result.stderr
    assert "Use larger images, or resize them (image_datasets(image_size=...))" in result.stderr
    assert not out.exists()  # no folder, no run.json


def test_data_pointing_at_a_file_says_so(tmp_path, capsys):
    archive = tmp_path / "cifar10.zip"
    archive.write_bytes(b"PK\x03\x04")
    assert_one_line_error(run_cli_here(capsys, *TRAIN, "--data", str(archive), "--out", str(tmp_path / "run")), 3,
                          f"Data folder {archive} is a file, not a folder: give the folder that holds train/<class>/*")
    assert not (tmp_path / "run").exists()


# --- messages that named the wrong cause ----------------------------------------------


def test_an_empty_stage_model_on_resume_is_named_with_what_to_do(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "stage1").mkdir(parents=True)
    (out / "stage1" / "model.keras").write_bytes(b"")
    (out / "run.json").write_text("{}")
    before = _tree(out)
    root = _folder(tmp_path / "data", size=(32, 32), per_class=2)
    args = ("train", "--data", str(root), "--epochs", "1,1", "--batch-size", "4", "--no-convert", "--out", str(out))
    assert_one_line_error(run_cli_here(capsys, *args, "--resume"), 3,
                          f"{out / 'stage1' / 'model.keras'} is empty (0 bytes; a disk that filled up, or a copy that "
                          "failed): remove it and resume (CLI: --resume): stage 1 is then trained again.")
    assert _tree(out) == before


def test_a_checkpoint_that_state_json_names_but_is_gone_or_empty(tmp_path, capsys):
    out = tmp_path / "run"
    folder = out / "stage2"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"stage": 2, "epochs_done": 1, "checkpoint": "checkpoint-0001.keras"}))
    (out / "run.json").write_text("{}")
    root = _folder(tmp_path / "data", size=(32, 32), per_class=2)
    args = ("train", "--quantizer", "bnn", "--epochs", "2", "--batch-size", "4", "--no-convert", "--data", str(root),
            "--out", str(out), "--resume")
    before = _tree(out)
    checkpoint = folder / "checkpoint-0001.keras"
    assert_one_line_error(run_cli_here(capsys, *args), 3,
                          f"Checkpoint {checkpoint} is missing, though {folder / 'state.json'} names it as the last "
                          f"complete epoch's: restore it, or move {folder} away to restart the stage from scratch.")
    assert _tree(out) == before
    checkpoint.write_bytes(b"")
    assert_one_line_error(run_cli_here(capsys, *args), 3, f"Checkpoint {checkpoint} is empty (0 bytes")


def test_qe_curve_refuses_a_folder_or_a_name_it_would_change(tmp_path, capsys):
    plots = tmp_path / "plots"
    plots.mkdir()
    assert_one_line_error(run_cli_here(capsys, "qe", "curve", "-o", str(plots)), 3,
                          f"Argument `path` is a folder: {plots}. Name the image file to write, e.g. {plots / 'qe_curve.png'}.")
    assert_one_line_error(run_cli_here(capsys, "qe", "curve", "-o", str(tmp_path / "curve")), 3,
                          "Argument `path` must end with an image format matplotlib writes (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"] and not any(plots.iterdir())  # no plots.png
