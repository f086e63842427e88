import os
import pathlib
import re
import subprocess
import sys
import pytest

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "train_cifar_subset.py"


@pytest.mark.slow
def test_example_runs_in_smoke_mode():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--smoke"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"stage 1 \(sine weights\) ([0-9.]+), stage 2 \(binary weights\) ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:]
    assert all(0.0 <= float(a) <= 1.0 for a in match.groups())


def test_example_says_when_the_data_folder_is_missing(tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLE), "--smoke", "--data", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "no CIFAR-10 image folder" in result.stderr and "Traceback" not in result.stderr
