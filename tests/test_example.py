import os
import pathlib
import re
import subprocess
import sys

import pytest

from cifar import SAMPLE_DIR

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "train_cifar_subset.py"


def _repository_only_env(**extra):
    """This process's environment without the variable that points the example at a
    CIFAR-10 folder outside the repository: the example sees only what a test passes."""
    env = {k: v for k, v in os.environ.items() if k != "BIPER_CIFAR10_DIR"}
    return {**env, **extra}


@pytest.mark.slow
def test_example_runs_in_smoke_mode():
    # On the packaged sample: the test needs nothing outside the repository.
    env = _repository_only_env(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, str(EXAMPLE), "--smoke", "--data", str(SAMPLE_DIR)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # --smoke: 10 training and 10 test images a class.
    assert "100 training / 100 test images, backend tensorflow" in result.stdout, result.stdout[-2000:]
    match = re.search(r"stage 1 \(sine weights\) ([0-9.]+), stage 2 \(binary weights\) ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:]
    # Accuracies over 100 test images, printed to 3 decimals: whole hundredths.
    assert all(round(float(a) * 1000) % 10 == 0 for a in match.groups()), match.groups()


def test_example_says_when_the_data_folder_is_missing(tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLE), "--smoke", "--data", str(tmp_path / "nope")],
                            env=_repository_only_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    # The last line (TensorFlow's own start-up lines, if any, come before it).
    assert result.stderr.strip().splitlines()[-1:] == [
        f"error: no CIFAR-10 image folder at {tmp_path / 'nope'}: pass --data PATH "
        "(an image folder with train/ and test/) or set BIPER_CIFAR10_DIR"]
