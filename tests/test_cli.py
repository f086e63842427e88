"""The `biper-keras` command: outputs, and one-line errors with non-zero exits."""

import contextlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

import biper_keras as bk
from biper_keras import analysis, cli
import tiny_model
from helpers import accuracy_of, assert_one_line_error, run_cli_here


def run(*args):
    """The CLI in this process, as a CompletedProcess: what a new process would print and
    return, without its TensorFlow start-up (seconds a call). The launcher's own behaviour
    and the other backends are tested in real processes (`run_process`)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_process(*args):
    """The CLI in a new Python process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, "-m", "biper_keras.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_qe_curve_writes_a_png(tmp_path):
    out = tmp_path / "fig3.png"
    result = run("qe", "curve", "--b", "0.05", "0.1", "-o", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max QE 0.102835 at b*omega = 0.954882" in result.stdout


def test_qe_curve_rejects_bad_b(tmp_path, capsys):
    assert_one_line_error(run_cli_here(capsys, "qe", "curve", "--b", "-0.1", "-o", str(tmp_path / "x.png")), 3, "`b` must be finite and > 0")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        bk.QuantConv2D(16, 3, kernel_quantizer=bk.BiPer(omega=25.0), input_quantizer="ste_sign", name="bconv"),
        keras.layers.Flatten(),
        keras.layers.Dense(2, name="head"),
    ])
    path = tmp_path_factory.mktemp("m") / "m.keras"
    model.save(path)
    return path, model


def test_qe_report_json_matches_the_library(saved_model):
    path, model = saved_model
    result = run("qe", "report", str(path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    expected = analysis.qe_report(model)
    assert [r["layer"] for r in rows] == ["bconv"]
    assert rows[0]["empirical_qe"] == pytest.approx(expected[0]["empirical_qe"])
    table = run("qe", "report", str(path))
    assert "bconv" in table.stdout and "head" not in table.stdout


def test_qe_report_errors(tmp_path, capsys):
    assert_one_line_error(run_cli_here(capsys, "qe", "report", str(tmp_path / "missing.keras")), 3, "no such file")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file at all")
    assert_one_line_error(run_cli_here(capsys, "qe", "report", str(corrupt)), 3, "could not load")


@pytest.mark.slow
def test_qe_sweep_trains_once_per_omega(tmp_path):
    sample = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"
    out = tmp_path / "sweep"
    # The sweep's mechanics, not ResNet-20's: tests/tiny_model.py's small BiPer CNN.
    result = run("qe", "sweep", "--model", tiny_model.NAME, "--data", str(sample), "--omegas", "5,40",
                 "--epochs", "1,1", "--batch-size", "50", "--limit", "100", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["omega"] for r in rows] == [5.0, 40.0]
    for r in rows:
        assert r["b_omega"] == pytest.approx(r["b"] * r["omega"], rel=1e-6)
        assert 0.0 <= r["qe"] <= 0.11  # QE's maximum is 0.102835 (analysis.qe_curve)
        # An accuracy over --limit 100 test images: whole hundredths.
        assert r["test_accuracy"] * 100 == pytest.approx(round(r["test_accuracy"] * 100), abs=1e-6)
    assert rows[0]["qe"] < rows[1]["qe"]  # a lower omega, a lower QE (rising branch)
    assert_one_line_error(run("qe", "sweep", "--omegas", "0,5", "--out", str(tmp_path / "x"), "--data", str(sample)),
                    3, "`omegas` must be finite numbers > 0")


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("biper-keras ")


# --- convert ------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_writes_tflite_and_reports(saved_model, tmp_path):
    path, _ = saved_model
    out = tmp_path / "m.tflite"
    result = run("convert", str(path), "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["ops"]["LceBconv2d"] == 1
    assert report["layers"][0]["layer"] == "bconv" and report["layers"][0]["fused"]
    assert report["parity"]["passed"]
    assert out.read_bytes()[4:8] == b"TFL3"
    table = run("convert", str(path))
    assert table.returncode == 0 and "bconv" in table.stdout and "LceBconv2d" in table.stdout


def test_convert_errors(tmp_path):
    assert_one_line_error(run("convert", str(tmp_path / "missing.keras")), 3, "no such file")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    assert_one_line_error(run("convert", str(corrupt)), 3, "could not load")


def test_convert_unfused_layer_exits_5(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        bk.QuantConv2D(4, 3, kernel_quantizer=bk.BiPer(binarize=False), input_quantizer="ste_sign", name="sine"),
    ])
    path = tmp_path / "stage1.keras"
    model.save(path)
    assert_one_line_error(run("convert", str(path)), 5, "sine (float kernel")
    assert run("convert", str(path), "--allow-unfused").returncode == 0


def test_convert_float_model_warns_but_succeeds(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "float.keras"
    model.save(path)
    result = run("convert", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: Model" in result.stderr and "no quantized layers" in result.stderr


# --- benchmark ----------------------------------------------------------------------


def test_benchmark_compare_float_json(saved_model):
    path, _ = saved_model
    result = run("benchmark", str(path), "--compare-float", "--threads", "1", "--runs", "2", "--warmup", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {r["option"] for r in report["binary"]} == {"default", "indirect_bgemm", "indirect_bgemm+xnnpack"}
    assert {r["option"] for r in report["float"]} == {"default", "xnnpack"}
    assert report["best"]["1"]["speedup"] > 0


def test_benchmark_errors(tmp_path, saved_model, capsys):
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(tmp_path / "nope.tflite")), 3, "no such file")
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\x00" * 64)
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(bogus)), 3, "is not a TFLite flatbuffer")
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(bogus), "--compare-float"), 3, "--compare-float needs the .keras model")
    result = run_cli_here(capsys, "benchmark", str(saved_model[0]), "--threads", "0")
    assert result.returncode == 2 and "values must be >= 1" in result.stderr


def test_benchmark_on_a_device_through_a_fake_binary(tmp_path):
    import stat

    sample = pathlib.Path(__file__).parent / "data" / "benchmark_model_plain.txt"
    fake = tmp_path / "lce_benchmark_model"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write(open({str(sample)!r}).read())\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"fake")
    result = run("benchmark", str(model), "--device-binary", str(fake), "--threads", "1,4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("inference avg 86.10 ms") == 2


# --- train / quickstart ---------------------------------------------------------------

SAMPLE = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"


@pytest.mark.slow
def test_train_one_stage_then_resume_finds_it_done(tmp_path):
    out = tmp_path / "run"
    # tests/tiny_model.py's small CNN: the checks are the run's, not ResNet-20's (~20 s less).
    args = ("train", "--model", tiny_model.NAME, "--data", str(SAMPLE), "--quantizer", "bnn", "--epochs", "1",
            "--batch-size", "50", "--limit", "100", "--out", str(out))
    result = run(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("plan: stage 2 1 epoch; 2 steps per epoch (100 images, batch 50), 2 steps in all" in result.stdout)
    assert "stage 2 epoch 1/1 took " in result.stdout and ": the last epoch of the run" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stage2"]["epochs"] == 1 and "stage1" not in summary
    assert (out / "stage2" / "model.keras").exists() and (out / "model.tflite").exists()
    mask = os.umask(0o022)
    os.umask(mask)
    for written in ("summary.json", "model.tflite", "stage2/model.keras", "stage2/state.json"):
        assert (out / written).stat().st_mode & 0o777 == 0o666 & ~mask, written  # not mkstemp's 0600
    conversion = json.loads((out / "conversion.json").read_text())
    assert conversion["ops"]["LceBconv2d"] == 2  # the tiny CNN's two binary convs, fused
    assert_one_line_error(run(*args), 3, "is not empty: pass resume=True")
    again = run(*args, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "the run is complete (stage 2 1 epoch); nothing to train" in again.stdout and "plan:" not in again.stdout


@pytest.mark.parametrize(
    "extra,message",
    [
        (("--model", "resnet21"), "Unknown model 'resnet21'"),
        (("--epochs", "0,3"), "--epochs must be > 0"),
        (("--quantizer", "sine"), "Unknown quantizer 'sine'"),
        (("--data", "/nonexistent/folder"), "Data folder not found"),
        # An unset shell variable or a meaningless value is an error, not the default
        # or a silently disabled term.
        (("--epochs", ""), "--epochs: expected a value or two comma-separated values, got ''"),
        (("--lr", ""), "--lr: expected a value"),
        (("--weight-decay", "nan"), "`stage1 weight_decay` must be a finite number >= 0. Received: stage1 weight_decay=nan"),
        (("--weight-decay", "0,-1"), "`stage2 weight_decay` must be a finite number >= 0"),
        (("--tau", "nan"), "`stage1 tau` must be a finite number >= 0"),
        (("--tau", "-5"), "`stage1 tau` must be a finite number >= 0. Received: stage1 tau=-5.0"),
        (("--warmup-epochs", "-5"), "`warmup_epochs` must be an integer >= 0. Received: warmup_epochs=-5"),
        (("--limit", "0"), "--limit must be >= 1"),
        (("--omega", "1e39"), "`omega` must be representable in float32"),
        (("--batch-size", "0"), "`batch_size` must be an integer > 0"),
        # A one-stage binarizer takes one value per setting (a second was silently ignored).
        (("--quantizer", "ste_sign", "--epochs", "2,1"), "--epochs 2,1: --quantizer ste_sign trains one stage"),
        (("--quantizer", "bnn", "--lr", "0.1,0.2"), "--lr 0.1,0.2: --quantizer bnn trains one stage"),
    ],
)
def test_train_bad_input(tmp_path, extra, message, capsys):
    args = ["train", "--data", str(SAMPLE), "--out", str(tmp_path / "x"), "--limit", "10"]
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += list(extra[i:i + 2])
    assert_one_line_error(run_cli_here(capsys, *args), 3, message)


def test_train_without_data_says_how_to_point_at_it(tmp_path, capsys):
    env_backup = os.environ.pop("BIPER_DATA_DIR", None)
    try:
        assert_one_line_error(run_cli_here(capsys, "train", "--out", str(tmp_path / "x")), 3, "set BIPER_DATA_DIR")
    finally:
        if env_backup is not None:
            os.environ["BIPER_DATA_DIR"] = env_backup


# What TensorFlow, TFLite and absl write when they are not silenced: "INFO: Created
# TensorFlow Lite XNNPACK delegate", "I0000 00:00:... cudart_stub.cc", oneDNN notices.
NATIVE_LOG_LINE = re.compile(r"^(INFO|WARNING|ERROR): |^[IWEF]\d{4} |absl::|oneDNN|cuda|cpu_feature_guard")


@pytest.mark.slow
def test_quickstart_through_the_command_prints_no_native_log_line(tmp_path):
    # The `biper-keras` command as a user runs it: the launcher, no TF_CPP_MIN_LOG_LEVEL.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    result = subprocess.run([sys.executable, "-m", "biper_keras_launcher", "quickstart",
                             "--out", str(tmp_path / "qs"), "--epochs", "1"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage2: test accuracy" in result.stdout and "LceBconv2d" in result.stdout
    assert "ms per image" in result.stdout and (tmp_path / "qs" / "model.tflite").exists()
    logs = [line for line in (result.stdout + result.stderr).splitlines() if NATIVE_LOG_LINE.search(line)]
    assert logs == []


@pytest.mark.slow
def test_summary_command(saved_model, tmp_path):
    path, model = saved_model
    result = run("summary", str(path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(result.stdout)
    assert stats["params_1bit"] == 3 * 3 * 3 * 16 and stats["binary_mac_ratio"] > 0.9
    assert "binarized MACs" in run("summary", str(path)).stdout
    assert_one_line_error(run("summary", str(tmp_path / "none.keras")), 3, "no such file")


@pytest.mark.slow
def test_train_on_another_backend(tmp_path):
    out = tmp_path / "jax"
    result = run_process("train", "--data", str(SAMPLE), "--quantizer", "ste_sign", "--epochs", "1",
                         "--batch-size", "50", "--limit", "50", "--out", str(out), "--backend", "jax", "--no-convert")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["stage2"]["epochs"] == 1
    assert "jax backend" in result.stdout and (out / "stage2" / "model.keras").exists()


def test_a_trained_model_loads_in_a_fresh_process(tmp_path):
    # A recipe checkpoint holds HardTanh, OptionAShortcut, the fused BatchNormalization
    # and the WarmupCosine schedule: `import biper_keras` must register them all.
    from biper_keras.models import get_model
    from biper_keras.training import WarmupCosine

    model = get_model("resnet20")
    model.compile(keras.optimizers.SGD(WarmupCosine(0.1, 2, 10)), "mse")
    path = tmp_path / "r20.keras"
    model.save(path)
    result = run_process("summary", str(path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    from biper_keras.summary import summary

    assert json.loads(result.stdout)["params"] == summary(model, print_fn=None).params


# --- the launcher: quiet TensorFlow start-up, one-line errors ------------------------


def assert_only_line(result, code, text):
    """Exit `code` and stderr exactly one line (no TensorFlow log, no usage block)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and text in lines[0], (result.returncode, result.stderr)


def test_launcher_error_is_one_line_without_tensorflow_logs(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip at all")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "_BIPER_KERAS_QUIET_TF")}
    env["KERAS_BACKEND"] = "tensorflow"
    result = subprocess.run([sys.executable, "-m", "biper_keras_launcher", "convert", str(broken), "-o",
                             str(tmp_path / "o.tflite")], env=env, capture_output=True, text=True, timeout=300)
    assert_only_line(result, 3, "is not a .keras archive")
    assert not (tmp_path / "o.tflite").exists()


def test_launcher_quiets_a_later_tensorflow_import_on_another_backend():
    # On JAX the CLI imports TensorFlow after the package (tf.data, LCE's interpreter):
    # its start-up lines must not reach the terminal then either.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "_BIPER_KERAS_QUIET_TF")}
    env["KERAS_BACKEND"] = "jax"
    code = ("import importlib.util, sys, biper_keras_launcher as l; l.quiet_import(['train']); "
            "assert 'tensorflow' not in sys.modules; importlib.util.find_spec('tensorflow'); "
            "import tensorflow as tf; print(float(tf.constant(2.0) + 1), type(tf.__loader__).__name__, "
            "any(isinstance(f, l._QuietTensorFlowImport) for f in sys.meta_path))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.split() == ["3.0", "SourceFileLoader", "False"]  # and the hook is gone


def test_launcher_asks_for_logs_only_when_the_user_did(monkeypatch):
    import biper_keras_launcher as launcher

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv(launcher._QUIET, raising=False)
    assert not launcher._wants_logs(["convert", "m.keras"])
    assert launcher._wants_logs(["--verbose", "convert", "m.keras"])
    assert launcher._wants_logs(["--verb", "summary", "m.keras"])
    assert not launcher._wants_logs(["--ve"])  # ambiguous with --version
    assert not launcher._wants_logs(["qe", "curve", "--", "--verbose"])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert launcher._wants_logs(["summary", "m.keras"])
    monkeypatch.setenv(launcher._QUIET, "1")  # set by a parent CLI, not by the user
    assert not launcher._wants_logs(["summary", "m.keras"])


def test_launcher_ctrl_c_during_the_import_is_one_line_and_130(monkeypatch, capsys):
    import importlib.abc

    import biper_keras_launcher as launcher

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "biper_keras.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "biper_keras.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # keep this process's fd 2 alone
    assert launcher.main(["summary", "m.keras"]) == 130
    assert capsys.readouterr().err == "biper-keras: error: interrupted by SIGINT\n"


@pytest.mark.parametrize("args, text", [
    (("convert",), "convert: the following arguments are required: model"),
    (("train", "--out", "x", "--stage", "3"), "train: argument --stage: invalid choice"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_one_line_with_exit_2(capsys, args, text):
    assert_only_line(run_cli_here(capsys, *args), 2, text)


def test_help_shows_defaults_and_exit_codes(capsys):
    result = run_cli_here(capsys, "convert", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(default: 0.98)" in text and "(default: arm)" in text
    assert "3 bad input" in text and "6 LCE and Keras disagree" in text and "(default: None)" not in text
    text = " ".join(run_cli_here(capsys, "train", "--help").stdout.split())
    assert "(default: resnet20)" in text and "(default 600,300: the paper's; 12,8 for a short trial" in text and "--seed SEED weights, shuffling, augmentation (default: 0)" in text


def test_ratios_are_worded_for_their_direction():
    from biper_keras.cli import _times

    assert _times(1 / 0.64, "faster", "slower") == "1.56x faster"
    assert _times(0.64, "faster", "slower") == "1.56x slower"  # not "0.64x faster"
    assert _times(1.0, "smaller", "larger") == "1.00x smaller"


NO_TENSORFLOW = """
import contextlib, io, sys
from biper_keras.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
    assert main(["qe", "curve", "--b", "0.1", "-o", sys.argv[1]]) == 0
print(sorted(m for m in ("tensorflow", "torch") if m in sys.modules))
"""


def test_help_and_qe_curve_import_no_tensorflow_of_their_own(tmp_path):
    # On the TensorFlow backend `import keras` itself imports TensorFlow (so does
    # `import biper_keras`): on JAX the CLI shows that it adds no TensorFlow import.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, str(tmp_path / "c.png")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "[]"
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_eta_after_the_first_epoch_counts_the_later_stages(monkeypatch):
    from biper_keras import progress

    clock = iter([100.0, 100.0 + 120.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines = []
    eta = progress.Eta(stage=1, epochs=600, epochs_after=300, print_fn=lines.append)
    eta.on_epoch_begin(0)
    eta.on_epoch_end(0)
    eta.on_epoch_begin(1)  # later epochs print nothing
    eta.on_epoch_end(1)
    assert len(lines) == 1
    # 120 s per epoch, 599 + 300 epochs left: 107,880 s = 30.0 h
    assert lines[0].startswith("stage 1 epoch 1/600 took 2 min: about 30.0 h for the 899 epochs left (ETA ")
    clock = iter([0.0, 3.0])  # a run's last epoch has nothing left to estimate
    eta = progress.Eta(stage=2, epochs=1, print_fn=lines.append)
    eta.on_epoch_begin(0)
    eta.on_epoch_end(0)
    assert lines[1] == "stage 2 epoch 1/1 took 3 s: the last epoch of the run"
    assert progress.plan_text([(1, 600), (2, 300)], 196, 256, 50000) == (
        "plan: stage 1 600 epochs, stage 2 300 epochs; 196 steps per epoch (50,000 images, batch 256), "
        "176,400 steps in all; time estimate after the first epoch")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    from biper_keras.convert import ConversionResult
    from biper_keras.training import _atomic_write

    previous = os.umask(umask)
    try:
        _atomic_write(tmp_path / "summary.json", lambda p: pathlib.Path(p).write_text("{}"))
        ConversionResult(b"\0\0\0\0TFL3", "arm", {}, [], 0, None).save(tmp_path / "model.tflite")
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "model.tflite").stat().st_mode & 0o777 == mode
    assert (tmp_path / "model.tflite").read_bytes() == b"\0\0\0\0TFL3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite", "summary.json"]  # no temporaries


@pytest.mark.slow
def test_train_with_the_device_cache(tmp_path, capsys, monkeypatch):
    from biper_keras import device_data

    calls = []
    real = device_data.device_datasets

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(device_data, "device_datasets", spy)
    out = tmp_path / "run"
    # tests/tiny_model.py's small CNN: the check is the data path, not ResNet-20 (~30 s a run).
    result = run_cli_here(capsys, "train", "--data", str(SAMPLE), "--quantizer", "bnn", "--epochs", "1",
                          "--batch-size", "50", "--limit", "100", "--cache", "device", "--no-convert",
                          "--model", tiny_model.NAME, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert calls == [{"batch_size": 50, "augment": "cifar", "normalize": "cifar10", "seed": 0,
                      "limit_per_split": 100}]
    model = keras.models.load_model(out / "stage2" / "model.keras")
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2  # 100 images, batch 50
    summary = json.loads((out / "summary.json").read_text())
    # The reported accuracy is the saved model's on the same 100 test images.
    test = real(SAMPLE, **calls[0]).test
    assert summary["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(model, test), abs=1e-6)
    # ImageNet-style inputs need the tf.data pipeline (random resized crop, 224x224).
    assert_one_line_error(run_cli_here(capsys, "train", "--data", "imagenet2012", "--cache", "device",
                                       "--out", str(tmp_path / "x")), 3, "--cache device keeps CIFAR-sized images")


def test_recipe_trial_is_the_paper_recipe_shortened_and_the_cli_builds_it():
    import dataclasses

    from biper_keras import cli
    from biper_keras.training import Recipe

    parse = lambda *a: cli._recipe(cli.build_parser().parse_args(["train", "--out", "x", *a]))  # noqa: E731
    assert parse() == Recipe()
    trial = Recipe.trial()
    assert parse("--epochs", "12,8") == trial
    paper = Recipe()
    assert trial == dataclasses.replace(paper, stage1=dataclasses.replace(paper.stage1, epochs=12),
                                        stage2=dataclasses.replace(paper.stage2, epochs=8))
    assert Recipe.trial((3, 2), batch_size=25) == dataclasses.replace(Recipe.trial((3, 2)), batch_size=25)


def test_the_quickstart_trains_the_measured_schedule():
    """The README's quickstart numbers come from benchmarks/quickstart_schedules.py's
    `paper_12_8_b25` row: the quickstart must train that recipe by default."""
    import dataclasses
    import importlib.util

    from biper_keras import cli
    from biper_keras.training import Recipe, quickstart_recipe

    default = cli.build_parser().parse_args(["quickstart"]).epochs
    assert quickstart_recipe(cli._pair(default, int, "epochs")) == Recipe.trial((12, 8), batch_size=25)
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "quickstart_schedules.py"
    spec = importlib.util.spec_from_file_location("quickstart_schedules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.variants()["paper_12_8_b25"] == quickstart_recipe((12, 8))
    rows = module.table([{"variant": "paper_12_8_b25", "seed": s, "seconds": 60.0, "stage1": a, "stage2": b,
                          "recipe": dataclasses.asdict(quickstart_recipe())}
                         for s, (a, b) in enumerate([(0.2, 0.25), (0.3, 0.35)])], ["paper_12_8_b25"])
    assert "| paper_12_8_b25 | 12+8 | 25 | 0.250 | 0.300 (0.250-0.350) | 60 |" in rows


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["qe", "curve", "--b", "0.05", "-o", "{tmp}/c.png"]])
def test_help_and_qe_curve_do_not_load_tensorflow_and_print_the_same(tmp_path, argv):
    """They compute nothing on a backend: the launcher lets Keras load JAX (a third of
    TensorFlow's import time) unless the user chose a backend; the output is unchanged."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = ("import sys, biper_keras_launcher as l\n"
            "try:\n    l.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('@@', 'tensorflow' in sys.modules, 'torch' in sys.modules)\n")
    results = {}
    for backend in (None, "tensorflow"):
        env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        if backend:
            env["KERAS_BACKEND"] = backend
        out = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True,
                             timeout=300, cwd=pathlib.Path(__file__).parents[1])
        assert out.returncode == 0, out.stderr[-2000:]
        results[backend] = out.stdout
    assert results[None].rstrip().endswith("@@ False False"), results[None][-300:]
    assert results["tensorflow"].rstrip().endswith("@@ True False")  # the user's choice is kept
    assert results[None].rsplit("@@", 1)[0] == results["tensorflow"].rsplit("@@", 1)[0]
