import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "train_step.py"


def test_train_step_quick_mode_prints_the_ratios():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # TensorFlow and Larq here; the JAX and torch paths are the same worker function.
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--backends", "tensorflow"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [l for l in result.stdout.splitlines() if l.startswith("| tensorflow")]
    assert len(rows) == 1
    for row in rows:
        biper, flt, ratio = (float(c) for c in row.strip("|").split("|")[1:4])
        assert biper > 0 and flt > 0 and abs(ratio - biper / flt) < 0.02 + 0.01 * ratio
    larq = [l for l in result.stdout.splitlines() if l.startswith("Larq QuantConv2D(ste_sign)")]
    assert len(larq) == 1 and "our BiPer on TensorFlow / Larq = " in larq[0]


def test_inference_quick_mode_prints_the_table():
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "inference.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, str(script), "--quick"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [l for l in result.stdout.splitlines() if l.startswith("| resnet20 |")]
    assert len(rows) == 2  # 1 and 2 threads
    assert all(float(r.split("|")[7].strip().rstrip("x")) > 5 for r in rows)  # size ratio
