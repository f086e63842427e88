"""Hardening: interruption (SIGKILL, SIGTERM, SIGINT) and resume, a full disk during a
checkpoint, unwritable and corrupt files, bad data files, wrong layer inputs,
determinism. Each bad input here is a row of docs/reliability.md."""

import errno
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import biper_keras as bk
from helpers import assert_one_line_error, run_cli_here
from tiny_model import NAME as TINY, cli_command
from biper_keras.data import image_datasets
from biper_keras.training import read_state

SAMPLE = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"
# The runs here test the run (interrupts, resume, checkpoints), not the model: a small
# BiPer CNN (tests/tiny_model.py) trains in ~5 s where ResNet-20 takes ~30 s.
TRAIN = ("train", "--data", str(SAMPLE), "--quantizer", "bnn", "--batch-size", "50", "--limit", "100",
         "--no-convert", "--model", TINY)


# --- interruption ------------------------------------------------------------------


def _start(out, *extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    # A shell starting background jobs (`cmd &`) sets SIGINT to "ignore", which children
    # inherit and Python then keeps: give the run the default, as a terminal would.
    return subprocess.Popen([sys.executable, *cli_command(), *TRAIN, "--out", str(out), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _epochs_done(folder):
    try:
        return (read_state(folder) or {}).get("epochs_done", 0)
    except ValueError:
        return 0


def _interrupt_after_progress(proc, folder, sig, rng, timeout=240):
    """Sends `sig` at a random moment after the run has completed one more epoch."""
    before, start = _epochs_done(folder), time.monotonic()
    while _epochs_done(folder) <= before:
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() - start < timeout
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.0))  # anywhere in the next epoch or its checkpoint
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def _check_committed_state(folder, steps_per_epoch=2):
    state = read_state(folder)
    model = keras.models.load_model(folder / state["checkpoint"])  # complete, loadable
    # The optimizer step counter proves the checkpoint holds exactly the committed epochs.
    assert int(np.array(model.optimizer.iterations)) == state["epochs_done"] * steps_per_epoch
    return state["epochs_done"]


@pytest.mark.slow
def test_killed_and_terminated_runs_resume_without_losing_an_epoch(tmp_path):
    # A fixed seed, so a failure replays the same kill points (BIPER_TEST_SEED tries others).
    seed = int(os.environ.get("BIPER_TEST_SEED", "0"))
    rng = random.Random(seed)
    out = tmp_path / "run"
    folder = out / "stage2"
    epochs = 40  # the tiny model runs an epoch in well under the up-to-1-s wait before each signal
    resume = ("--epochs", f"{epochs}", "--resume")

    code, _ = _interrupt_after_progress(_start(out, "--epochs", f"{epochs}"), folder, signal.SIGKILL, rng)
    assert code == -signal.SIGKILL, seed
    done = [_check_committed_state(folder)]

    code, stderr = _interrupt_after_progress(_start(out, *resume), folder, signal.SIGTERM, rng)
    if code == 0:
        pytest.fail(f"seed {seed}: the run finished before SIGTERM")
    assert code == 128 + signal.SIGTERM, (seed, stderr[-2000:])
    lines = [l for l in stderr.splitlines() if l.startswith("biper-keras")]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "--resume" in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr
    done.append(_check_committed_state(folder))

    # Ctrl-C at a random moment: exit 130 every time (not 1 run in 4 running to the end),
    # and a state that resumes.
    code, stderr = _interrupt_after_progress(_start(out, *resume), folder, signal.SIGINT, rng)
    assert code == 128 + signal.SIGINT, (seed, stderr[-2000:])
    assert "interrupted by SIGINT" in stderr and "Traceback" not in stderr, (seed, stderr[-2000:])
    done.append(_check_committed_state(folder))

    assert done == sorted(done) and done[-1] < epochs, (seed, done)

    final = _start(out, *resume)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, (seed, stderr[-2000:])
    model = keras.models.load_model(folder / "model.keras")
    assert int(np.array(model.optimizer.iterations)) == epochs * 2, seed  # no epoch run twice or lost
    rows = (folder / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(epochs)), (seed, rows)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], seed  # no temporary files
    assert [p.name for p in folder.glob("checkpoint-*.keras")] == [f"checkpoint-{epochs:04d}.keras"]


def test_ctrl_c_prints_the_resume_hint_and_exits_130(tmp_path, capsys, monkeypatch):
    from biper_keras import cli

    def interrupted(args):
        raise KeyboardInterrupt  # what Python's default SIGINT handler raises mid-training

    monkeypatch.setattr(cli, "_train", interrupted)
    out = tmp_path / "run"
    result = run_cli_here(capsys, *TRAIN, "--epochs", "2", "--out", str(out))
    assert_one_line_error(result, 128 + signal.SIGINT, f"interrupted by SIGINT; complete epochs are saved in {out}")
    assert "--resume" in result.stderr


# --- disk and files ------------------------------------------------------------------


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    original_save = keras.Model.save
    calls = []

    def save_then_disk_full(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second epoch's checkpoint: half a file, then ENOSPC
            pathlib.Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_then_disk_full)
    result = run_cli_here(capsys, *TRAIN, "--epochs", "3", "--out", str(out))
    assert_one_line_error(result, 4, "No space left on device")
    folder = out / "stage2"
    assert read_state(folder)["epochs_done"] == 1
    monkeypatch.setattr(keras.Model, "save", original_save)
    assert _check_committed_state(folder) == 1
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # the half file is gone


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli_here(capsys, *TRAIN, "--epochs", "1", "--out", str(blocker / "run")), 4, "Not a directory")


def test_corrupt_checkpoint_or_state_on_resume(tmp_path, capsys):
    folder = tmp_path / "run" / "stage2"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"stage": 2, "epochs_done": 1, "checkpoint": "checkpoint-0001.keras"}))
    (folder / "checkpoint-0001.keras").write_bytes(b"PK\x03\x04 truncated")
    args = (*TRAIN, "--epochs", "2", "--out", str(tmp_path / "run"), "--resume")
    assert_one_line_error(run_cli_here(capsys, *args), 3, "could not be loaded")
    (folder / "state.json").write_text('{"stage": 2, "epo')
    assert_one_line_error(run_cli_here(capsys, *args), 3, "state.json is not valid JSON")


@pytest.mark.parametrize("command", [("summary",), ("qe", "report"), ("convert",)])
def test_truncated_keras_file(tmp_path, capsys, command):
    model = keras.Sequential([keras.Input((4,)), bk.QuantDense(2, kernel_quantizer="ste_sign")])
    path = tmp_path / "m.keras"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli_here(capsys, *command, str(path)), 3, "could not load")


def test_non_image_files_in_a_folder_are_skipped_with_a_warning(tmp_path):
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for f in sorted((SAMPLE / split / cls).iterdir())[:3]:
                shutil.copy(f, folder)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")  # ignored by suffix
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # skipped: not image data
    (tmp_path / "train" / "dog" / "page.png").write_text("<html>")
    with pytest.warns(UserWarning, match=r"skipped 2 image file\(s\) that would not decode \(first: .*broken\.jpg: "
                                         r"not JPEG/PNG/BMP/GIF data"):
        data = image_datasets(tmp_path, batch_size=4, augment=None, shuffle=False)
    assert data.train_size == 6
    labels = np.concatenate([y.numpy() for _, y in data.train])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


# --- layers ---------------------------------------------------------------------------


def test_wrong_input_rank_and_channels_for_layers():
    conv = bk.QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer="biper")
    with pytest.raises(ValueError, match="expected min_ndim=4, found ndim=3"):
        conv(np.zeros((2, 8, 3), "float32"))
    conv(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        conv(np.zeros((1, 8, 8, 5), "float32"))
    dense = bk.QuantDense(4, kernel_quantizer="biper")
    dense(np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 6"):
        dense(np.zeros((2, 7), "float32"))


# --- determinism ----------------------------------------------------------------------

DETERMINISM = """
import sys, keras, numpy as np
from biper_keras.cli import main
weights = []
for run in range(2):  # twice in one process: the CLI path with --deterministic
    out = f"{sys.argv[2]}/run{run}"
    assert main(["train", "--data", sys.argv[1], "--quantizer", "bnn", "--epochs", "1", "--batch-size", "25",
                 "--limit", "100", "--seed", "3", "--no-convert", "--deterministic", "--out", out]) == 0
    model = keras.models.load_model(f"{out}/stage2/model.keras")
    weights.append(model.get_weights())
    steps = int(np.array(model.optimizer.iterations))  # the runs really trained
same = all(np.array_equal(a, b) for a, b in zip(*weights))
print("IDENTICAL" if same else "DIFFERENT", len(weights[0]), steps)
"""


@pytest.mark.slow
def test_two_deterministic_runs_give_identical_weights(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", DETERMINISM, str(SAMPLE), str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    verdict, count, steps = result.stdout.split()[-3:]
    assert verdict == "IDENTICAL" and int(count) > 50 and int(steps) == 4  # 100 images, batch 25


# --- the CLI's error contract ----------------------------------------------------------


def test_verbose_shows_the_traceback_and_bugs_keep_theirs(tmp_path, capsys, monkeypatch):
    from biper_keras import cli

    with pytest.raises(cli.CommandError, match="no such file"):
        cli.main(["--verbose", "summary", str(tmp_path / "missing.keras")])

    def bug(args):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(cli, "_summary", bug)
    with pytest.raises(KeyError):  # --verbose: the bug's own traceback
        cli.main(["--verbose", "summary", str(tmp_path / "missing.keras")])
    # Without it: exit 1 and a bug report, never the bad-input code (test_review_fixes.py).
    assert cli.main(["summary", str(tmp_path / "missing.keras")]) == cli.EXIT_BUG == 1


# --- issue 24: nothing the user has may be lost ----------------------------------------


def _sha(path):
    import hashlib

    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _tiny_model_file(folder):
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              bk.QuantConv2D(4, 3, kernel_quantizer="ste_sign", input_quantizer="ste_sign"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    path = folder / "m.keras"
    model.save(path)
    return path, model


def test_convert_refuses_an_output_that_is_one_of_its_inputs(tmp_path, capsys):
    path, _ = _tiny_model_file(tmp_path)
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 8, 8, 3), "float32"))
    before = {p: _sha(p) for p in (path, data)}
    same_model = str(tmp_path / ".." / tmp_path.name / "m.keras")  # another spelling of the same file
    assert_one_line_error(run_cli_here(capsys, "convert", str(path), "-o", same_model), 3, "is the input")
    assert_one_line_error(run_cli_here(capsys, "convert", str(path), "--data", str(data), "-o", str(data)), 3,
                          f"is the input {data}")
    assert {p: _sha(p) for p in (path, data)} == before
    assert_one_line_error(run_cli_here(capsys, "convert", str(path), "-o", ""), 3, "-o/--output is empty")
    assert_one_line_error(run_cli_here(capsys, "convert", str(path), "-o", str(tmp_path)), 4, "is a folder")


def _sample_subset(root, classes=("airplane", "cat"), per_class=3, splits=("train", "test")):
    for split in splits:
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for f in sorted((SAMPLE / split / cls).iterdir())[:per_class]:
                shutil.copy(f, folder)
    return root


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "model.tflite").write_bytes(os.urandom(64))
    (out / "conversion.json").write_text('{"ops": {"LceBconv2d": 18}}')
    (out / "summary.json").write_text('{"stage2": {"test_accuracy": 0.91}}')
    before = {p.name: _sha(p) for p in out.iterdir()}
    result = run_cli_here(capsys, *TRAIN, "--epochs", "1", "--out", str(out), "--resume")
    assert_one_line_error(result, 3, "is not a training run")
    assert {p.name: _sha(p) for p in out.iterdir()} == before  # nothing written, nothing replaced


@pytest.mark.parametrize("state", ["{}", "[]", "null", '{"stage": 2, "epochs_done": -3, "checkpoint": "checkpoint--003.keras"}',
                                   '{"stage": 2, "epochs_done": 2, "checkpoint": "checkpoint-0001.keras"}', None])
def test_a_malformed_state_is_an_error_and_keeps_the_checkpoints(tmp_path, capsys, state):
    folder = tmp_path / "run" / "stage2"
    folder.mkdir(parents=True)
    checkpoint = folder / "checkpoint-0002.keras"
    checkpoint.write_bytes(os.urandom(256))  # never read: the state is refused first
    if state is not None:
        (folder / "state.json").write_text(state)
    before = _sha(checkpoint)
    result = run_cli_here(capsys, *TRAIN, "--epochs", "3", "--out", str(tmp_path / "run"), "--resume")
    expected = "has checkpoints but no state.json" if state is None else "state.json is not a training state"
    assert_one_line_error(result, 3, expected)
    assert _sha(checkpoint) == before and sorted(p.name for p in folder.iterdir()) == sorted(
        ["checkpoint-0002.keras"] + (["state.json"] if state is not None else []))


def _accuracy(model, dataset):
    hits = total = 0
    for x, y in dataset:
        hits += int(np.sum(np.argmax(model.predict(x, verbose=0), 1) == y.numpy()))
        total += len(y)
    return hits / total


@pytest.mark.slow
def test_an_interrupted_final_evaluation_is_completed_on_resume(tmp_path, capsys, monkeypatch):
    # Stopping the process inside the evaluation that follows `stage1/model.keras` (the
    # state a SIGKILL there leaves: nothing is written between the two) used to lose
    # stage 1's accuracy for good.
    out = tmp_path / "run"
    args = ("train", "--data", str(SAMPLE), "--batch-size", "50", "--limit", "50", "--no-convert", "--model", TINY,
            "--epochs", "1,1", "--stage", "1", "--out", str(out))
    original = keras.Model.evaluate

    def interrupted(self, *a, **kw):
        if "_use_cached_eval_dataset" in kw:  # fit's validation pass: let it run
            return original(self, *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "evaluate", interrupted)
    assert_one_line_error(run_cli_here(capsys, *args), 130, "interrupted by SIGINT")
    assert (out / "stage1" / "model.keras").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(keras.Model, "evaluate", original)
    result = run_cli_here(capsys, *args, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    data = image_datasets(SAMPLE, batch_size=50, limit_per_split=50, augment=None, shuffle=False)
    model = keras.models.load_model(out / "stage1" / "model.keras")
    assert summary["stage1"]["test_accuracy"] == pytest.approx(_accuracy(model, data.test), abs=1e-6)
    assert summary["stage1"]["epochs"] == 1 and summary["stage1"]["images_per_second"] > 0  # from fit.json
    assert int(np.array(model.optimizer.iterations)) == 1  # evaluated on resume, not trained again


def test_truncated_or_garbage_tflite_is_refused_before_the_interpreter(tmp_path, capsys):
    from biper_keras.benchmark import time_tflite, validate_flatbuffer
    from biper_keras.convert import convert

    _, model = _tiny_model_file(tmp_path)
    flatbuffer = convert(model, verify=False).flatbuffer  # loaded and run by convert(); parity not needed here
    validate_flatbuffer(flatbuffer)  # a sound file passes, and times
    assert time_tflite(flatbuffer, threads=(1,), options={"default": {}}, warmup=0, runs=1)[0].runs == 1
    bad = tmp_path / "bad.tflite"
    rng = np.random.default_rng(0)
    cases = [flatbuffer[:3000], flatbuffer[:len(flatbuffer) - 9]]
    cases += [flatbuffer[:8] + rng.integers(0, 256, len(flatbuffer) - 8, dtype=np.uint8).tobytes() for _ in range(5)]
    for case in cases:
        bad.write_bytes(case)
        # In this process: a segfault in the interpreter would end the test run here.
        assert_one_line_error(run_cli_here(capsys, "benchmark", str(bad), "--threads", "1", "--runs", "1"), 3,
                              "corrupt TFLite flatbuffer")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        time_tflite(flatbuffer[:3000], threads=(1,))


@pytest.mark.slow
def test_a_batch_larger_than_the_data_is_bounded_by_it(tmp_path, capsys):
    data = image_datasets(SAMPLE, batch_size=2**31 - 1, limit_per_split=16, augment=None)
    assert [len(y) for _, y in data.train] == [16] and [len(y) for _, y in data.test] == [16]
    out = tmp_path / "run"
    result = run_cli_here(capsys, "train", "--data", str(SAMPLE), "--quantizer", "bnn", "--batch-size", str(2**31 - 1),
                          "--limit", "16", "--epochs", "1", "--no-convert", "--model", TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    model = keras.models.load_model(out / "stage2" / "model.keras")
    assert int(np.array(model.optimizer.iterations)) == 1  # one step: the whole set in one batch


@pytest.mark.slow
def test_an_interrupt_swallowed_by_a_gc_callback_still_stops_the_run(tmp_path, capsys, monkeypatch):
    # TensorFlow's _xla_gc_callback: Python prints "Exception ignored in" for an
    # exception raised while a gc callback runs, and drops it. Reproduced exactly: the
    # CLI's SIGINT handler raising inside a gc callback, right after epoch 1's commit.
    import gc

    from biper_keras import interrupts, training

    def swallowed(phase, info):
        gc.callbacks.remove(swallowed)
        interrupts.on_signal(signal.SIGINT, None)

    original = training.EpochCheckpoint.on_epoch_end

    def commit_then_signal(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            gc.callbacks.append(swallowed)
            gc.collect()

    monkeypatch.setattr(training.EpochCheckpoint, "on_epoch_end", commit_then_signal)
    out = tmp_path / "run"
    args = (*TRAIN, "--epochs", "2", "--out", str(out))
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    result = run_cli_here(capsys, *args)
    assert [type(d.exc_value) for d in dropped] == [interrupts.Interrupted]  # Python did drop it
    assert_one_line_error(result, 130, "interrupted by SIGINT; complete epochs are saved")
    assert _check_committed_state(out / "stage2") == 1  # stopped at the next batch, not at the end
    monkeypatch.setattr(training.EpochCheckpoint, "on_epoch_end", original)
    result = run_cli_here(capsys, *args, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    model = keras.models.load_model(out / "stage2" / "model.keras")
    assert int(np.array(model.optimizer.iterations)) == 2 * 2

    # The finished run: resuming it with another recipe or other classes is refused.
    summary = _sha(out / "summary.json")
    for extra, message in [(("--epochs", "1"), "stage2.epochs 2 -> 1"),
                           (("--model", "vgg_small"), f"model '{TINY}' -> 'vgg_small'")]:
        assert_one_line_error(run_cli_here(capsys, *args, *extra, "--resume"), 3, message)
    few = _sample_subset(tmp_path / "two-classes")
    assert_one_line_error(run_cli_here(capsys, *args, "--data", str(few), "--resume"), 3,
                          "number of classes 10 -> 2")
    assert _sha(out / "summary.json") == summary


def test_convert_refuses_data_and_values_that_make_the_check_meaningless(tmp_path, capsys):
    path, _ = _tiny_model_file(tmp_path)
    cases = {"empty.npy": np.zeros((0, 8, 8, 3), "float32"), "nan.npy": np.full((2, 8, 8, 3), np.nan, "float32"),
             "text.npy": np.array(["a", "b"])}
    for name, array in cases.items():
        np.save(tmp_path / name, array)
    convert = ("convert", str(path), "--data")
    assert_one_line_error(run_cli_here(capsys, *convert, str(tmp_path / "empty.npy")), 3, "holds no samples (shape (0, 8, 8, 3))")
    assert_one_line_error(run_cli_here(capsys, *convert, str(tmp_path / "nan.npy")), 3, "contains NaN or infinite values")
    assert_one_line_error(run_cli_here(capsys, *convert, str(tmp_path / "text.npy")), 3, "must hold one numeric array")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert_one_line_error(run_cli_here(capsys, *convert, str(tmp_path / "junk.npy")), 3, "could not load")
    # A fraction above 1 can never pass: it is a bad value, not a Keras/LCE disagreement (6).
    for value in ("2", "-0.1", "nan"):
        assert_one_line_error(run_cli_here(capsys, "convert", str(path), "--min-top1", value), 3,
                              "--min-top1 must be a fraction between 0 and 1")


def test_empty_corrupt_and_unreadable_files_are_named_as_such(tmp_path, capsys, monkeypatch):
    from biper_keras import cli

    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    assert_one_line_error(run_cli_here(capsys, "summary", str(empty)), 3, "is empty (0 bytes)")
    torn = tmp_path / "torn.keras"
    torn.write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert_one_line_error(run_cli_here(capsys, "summary", str(torn)), 3, "torn.keras is truncated")
    assert_one_line_error(run_cli_here(capsys, "summary", str(tmp_path)), 3, "is not a file")
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(empty.with_suffix(".tflite"))), 3, "no such file")

    def unreadable(path, *args, **kwargs):  # tests run as root, where chmod 000 still reads
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(cli, "open", unreadable, raising=False)
    assert_one_line_error(run_cli_here(capsys, "summary", str(torn)), 4, "cannot read")
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(torn)), 4, "Permission denied")


def test_the_backend_option_is_removed_in_every_spelling():
    from biper_keras.relaunch import without_option as _without_option

    base = ["train", "--data", "d", "--out", "o"]
    for spelled in (["--backend", "jax"], ["--backend=jax"], ["--back", "jax"], ["--backend=jax"]):
        assert _without_option(base[:3] + spelled + base[3:], "--backend") == base
    assert _without_option(["train", "--", "--backend"], "--backend") == ["train", "--", "--backend"]


def test_a_hanging_device_times_out_with_one_line(tmp_path, capsys):
    import stat

    hang = tmp_path / "lce_benchmark_model"
    hang.write_text("#!/bin/sh\nsleep 60 &\nsleep 60\n")  # a child of its own too: the whole group goes
    hang.chmod(hang.stat().st_mode | stat.S_IEXEC)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"fake")
    start = time.monotonic()
    result = run_cli_here(capsys, "benchmark", str(model), "--device-binary", str(hang), "--threads", "1",
                          "--timeout", "1")
    assert_one_line_error(result, 4, "lce_benchmark_model did not finish within 1 s")
    assert time.monotonic() - start < 30  # not the 60 s of the hung command's children
    assert_one_line_error(run_cli_here(capsys, "benchmark", str(model), "--device-binary", str(hang),
                                       "--timeout", "0"), 3, "--timeout > 0")


def test_get_model_refuses_empty_sizes():
    from biper_keras.models import get_model

    for shape in [(0, 32, 3), (32, -1, 3), (32, 32, 0.5)]:
        with pytest.raises(ValueError, match=r"`input_shape` must be a tuple of sizes > 0"):
            get_model("resnet20", input_shape=shape)


def test_tensorflow_errors_report_their_cause(capsys, monkeypatch):
    import tensorflow as tf

    from biper_keras import cli

    @tf.function
    def decode(x):
        return tf.io.decode_jpeg(x)

    def train_on_a_bad_file(args):
        decode(tf.constant(b"\xff\xd8\xff not a jpeg"))

    monkeypatch.setattr(cli, "_summary", train_on_a_bad_file)
    result = run_cli_here(capsys, "summary", "x.keras")
    assert_one_line_error(result, 3, "Graph execution error: jpeg::Uncompress failed. Invalid JPEG data")


def test_the_library_parity_check_refuses_empty_or_nan_data():
    from biper_keras.convert import check_parity

    for x in (np.zeros((0, 8, 8, 3)), np.full((2, 8, 8, 3), np.nan)):
        with pytest.raises(ValueError, match="at least one sample, all finite"):
            check_parity(b"never read", None, x)
