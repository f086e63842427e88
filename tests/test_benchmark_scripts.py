"""The scripts in benchmarks/ in their --quick modes and their report writers (the library
module biper_keras.benchmark is tested in test_latency_benchmark.py)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "train_step.py"


@pytest.mark.slow
def test_train_step_quick_mode_prints_the_ratios():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # TensorFlow, Larq and the PyTorch reference; JAX and torch run the same worker function.
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--backends", "tensorflow"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # The timing table's row (the targets table's rows name a ratio after the backend).
    rows = [l for l in result.stdout.splitlines() if l.startswith("| tensorflow |")]
    assert len(rows) == 1
    for row in rows:
        biper, flt, ratio = (float(c) for c in row.strip("|").split("|")[1:4])
        assert biper > 0 and flt > 0 and abs(ratio - biper / flt) < 0.02 + 0.01 * ratio
    larq = [l for l in result.stdout.splitlines() if l.startswith("Larq QuantConv2D(ste_sign)")]
    assert len(larq) == 1 and "our BiPer on TensorFlow / Larq = " in larq[0]
    reference = [l for l in result.stdout.splitlines() if l.startswith("PyTorch reference")]
    assert len(reference) == 1 and "our best (tensorflow) / PyTorch reference = " in reference[0]


@pytest.mark.slow
def test_inference_quick_mode_prints_the_table():
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "inference.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, str(script), "--quick"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [l for l in result.stdout.splitlines() if l.startswith("| resnet20 |")]
    assert len(rows) == 2  # 1 and 2 threads
    assert all(float(r.split("|")[7].strip().rstrip("x")) > 5 for r in rows)  # size ratio


def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_input_pipeline_quick_mode(tmp_path, capsys):
    _load("input_pipeline").main(["--quick", "--out", str(tmp_path / "pipe.json")])
    result = json.loads((tmp_path / "pipe.json").read_text())
    assert result["train_images"] == 500  # the packaged sample
    assert result["later_epoch_images_per_second"] > 0 and result["training_images_per_second"] > 0
    assert abs(result["headroom"] - result["later_epoch_images_per_second"] / result["training_images_per_second"]) < 1e-9
    assert "| ResNet-20 BiPer training step consumes |" in (tmp_path / "pipe.md").read_text()


@pytest.mark.slow
def test_full_scale_quick_mode_extrapolates_from_the_measured_rate(tmp_path):
    _load("full_scale").main(["--quick", "--out", str(tmp_path / "full.json")])
    (row,) = json.loads((tmp_path / "full.json").read_text())["rows"]
    assert row["model"] == "resnet20" and 0.26e6 < row["parameters"] < 0.28e6
    assert abs(row["cpu_hours"] - 900 * 50_000 / row["images_per_second"] / 3600) < 1e-6


def test_accuracy_and_omega_reports_from_finished_runs(tmp_path):
    """The aggregation of benchmarks/accuracy.py and omega_ablation.py on run folders
    shaped like the CLI's (the CLI runs themselves are tested in test_cli.py)."""
    accuracy = _load("accuracy")
    folder = tmp_path / "biper"
    for stage, acc in (("stage1", 0.4), ("stage2", 0.5)):
        (folder / stage).mkdir(parents=True)
        (folder / stage / "log.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.3,1.9,0.35,1.8\n1,0.4,1.7,0.45,1.6\n")
    summary = {s: {"test_accuracy": a, "seconds": 60.0, "images_per_second": 200.0}
               for s, a in (("stage1", 0.45), ("stage2", 0.52))}
    (folder / "summary.json").write_text(json.dumps(summary))
    result = accuracy.collect("biper", folder, ["--epochs", "2,2"])
    assert result["test_accuracy"] == 0.52 and result["epochs"] == 4 and result["minutes"] == 2.0
    assert [c["epoch"] for c in result["curve"]] == [1, 2, 3, 4] and result["images_per_second"] == 200.0
    meta = {"date": "2026-11-22", "batch_size": 128, "seed": 0, "train_images": 100, "test_images": 50, "epochs": [2, 2]}
    accuracy.write_outputs([result], tmp_path / "out" / "accuracy", meta)
    assert "| biper | 4 | 0.5200 (stage1 0.4500, stage2 0.5200) | 200 | 2.0 |" in (tmp_path / "out" / "accuracy.md").read_text()
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 1000
    rows = [{"omega": w, "test_accuracy": 0.3, "b": 0.05, "b_omega": 0.05 * w, "qe": 0.01 * i, "qe_analytic": 0.01 * i}
            for i, w in enumerate((1.0, 20.0))]
    _load("omega_ablation").plot(rows, tmp_path / "omega.png")
    assert (tmp_path / "omega.png").stat().st_size > 1000


@pytest.mark.slow
def test_gpu_recipe_quick_mode_runs_both_stages_on_the_device_data(tmp_path, monkeypatch):
    import tiny_model

    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "gpu_recipe.py"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = tmp_path / "gpu"
    # The script's mechanics (stages, sweep, FLOP count, report), not ResNet-20's: it trains
    # tests/tiny_model.py's small BiPer CNN (--model), registered before the script runs
    # (~6 XLA compiles of ResNet-20 took ~2 min on 2 cores).
    here = pathlib.Path(__file__).parent
    wrapper = (f"import sys, runpy; sys.path.insert(0, {str(here)!r}); import tiny_model; "
               f"sys.argv[0] = {str(script)!r}; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", wrapper, "--quick", "--sweep-step", "--model", tiny_model.NAME,
                             "--out", str(out), "--runs", str(tmp_path / "run")],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.with_suffix(".json").read_text())["result"]
    assert row["model"] == tiny_model.NAME
    assert row["train_images"] == 100 and row["epochs"] == [1, 1] and row["epochs_timed"] == 2
    # tiny_cnn's multiply-adds per image, from its layer shapes (32x32x3 in, 8 filters, 3x3
    # kernels): the float stem conv, the two binary convs (the second at stride 2, 16x16
    # out) and the dense head to 10 classes.
    f = 8
    tiny_macs = 32 * 32 * 3 * f * 9 + 32 * 32 * f * f * 9 + 16 * 16 * f * f * 9 + f * 10
    assert row["macs_per_image"] == tiny_macs
    assert row["flops_per_step"] == 6 * row["macs_per_image"] * 50
    assert 0 <= row["stage1_top1"] <= 1 and 0 <= row["stage2_top1"] <= 1 and row["step_ms"] > 0
    report = out.with_suffix(".md").read_text()
    assert "| step (ms) |" in report and report.startswith(f"{tiny_model.NAME} BiPer, CIFAR-10")
    # --quick sweeps two of the four settings (the run's own, float32 x 1, is not timed twice).
    assert [(s["precision"], s["steps_per_execution"]) for s in row["step_sweep"]] == [
        ("float32", 1), ("mixed_bfloat16", 8)]
    assert all(s["step_ms"] > 0 for s in row["step_sweep"])
    # An unknown --model: one line naming the known ones, before any data is loaded.
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))  # main() sets it
    with pytest.raises(SystemExit, match=r"^error: unknown model 'resnet21' \(--model\); known: .*resnet20") as raised:
        _load("gpu_recipe").main(["--quick", "--model", "resnet21", "--out", str(tmp_path / "bad"),
                                  "--runs", str(tmp_path / "bad-run")])
    assert "\n" not in str(raised.value) and not (tmp_path / "bad-run").exists()
