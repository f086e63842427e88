"""Runs tests/backend_suite once per Keras backend, each in its own process (Keras
reads KERAS_BACKEND once, at import)."""

import os
import pathlib
import subprocess
import sys

import pytest

SUITE = pathlib.Path(__file__).parent / "backend_suite"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_backend_suite(backend):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "BIPER_TEST_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-n", "0",
         "-o", "python_files=suite_*.py", f"--confcutdir={SUITE}", str(SUITE)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    # Name the checks that failed first (the nested run's short summary), then the detail.
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, (f"{backend} suite: {len(failed)} check(s) failed:\n" + "\n".join(failed)
                                    + f"\n\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
