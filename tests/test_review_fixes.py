"""The fixes of the maintainers' review: each test failed on the code before its fix."""

import pathlib
import random
import re
import types

import keras
import numpy as np
import pytest

from helpers import assert_one_line_error, run_cli_here

# --- the CLI: bad input is exit 3, a bug is exit 1 with its traceback in a file ----------


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), RuntimeError("boom"), KeyError("stage1")])
def test_an_unexpected_error_is_a_bug_report_not_bad_input(error, capsys, monkeypatch, tmp_path):
    import tempfile

    from biper_keras import analysis

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(analysis, "plot_qe_curve", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run_cli_here(capsys, "qe", "curve", "-o", str(tmp_path / "c.png"))
    assert_one_line_error(result, 1, f"unexpected {type(error).__name__}")
    path = re.search(r"the traceback is in (\S+):", result.stderr).group(1)
    saved = pathlib.Path(path).read_text()
    assert pathlib.Path(path).parent == tmp_path
    assert saved.startswith("Traceback") and f"{type(error).__name__}: " in saved and "in broken" in saved


def test_a_library_value_error_is_still_bad_input(capsys, monkeypatch, tmp_path):
    from biper_keras import analysis

    def refuses(*args, **kwargs):
        raise ValueError("Argument `b` must be > 0. Received: b=-1.")

    monkeypatch.setattr(analysis, "plot_qe_curve", refuses)
    result = run_cli_here(capsys, "qe", "curve", "-o", str(tmp_path / "c.png"))
    assert_one_line_error(result, 3, "Argument `b` must be > 0")


# --- library calls leave global state as they found it ---------------------------------

SHAPES = types.SimpleNamespace(image_shape=(16, 16, 3), num_classes=4)  # what build_model reads of the data


def _recipe(seed=0):
    from biper_keras.training import Recipe, Stage

    return Recipe(stage1=Stage(1, 0.05, 1e-4, 0.037), stage2=Stage(1, 0.02, 1e-5, 0.0468),
                  batch_size=8, warmup_epochs=1, seed=seed)


def test_build_model_leaves_the_callers_random_streams_alone():
    import tensorflow as tf

    from biper_keras.training import build_model

    def draws():
        return random.random(), np.random.rand(), float(tf.random.uniform(()))

    for seed_all in (keras.utils.set_random_seed, lambda s: (random.seed(s), np.random.seed(s), tf.random.set_seed(s))):
        seed_all(7)
        expected = draws()
        seed_all(7)
        build_model(_recipe(), 1, SHAPES)
        assert draws() == expected


def test_build_model_weights_depend_on_the_recipe_seed_only():
    from biper_keras.training import build_model

    def weights(seed, noise):
        random.seed(noise)
        np.random.seed(noise)
        return build_model(_recipe(seed), 1, SHAPES).get_weights()

    first, again, other = weights(0, noise=1), weights(0, noise=2), weights(3, noise=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_data_parallel_scope_restores_the_distribution():
    from shared_processes import run_python

    out = run_python(
        "import keras\n"
        "from biper_keras.training import distribution_scope\n"
        "assert keras.distribution.distribution() is None\n"
        "with distribution_scope('data-parallel')():\n"
        "    inside = type(keras.distribution.distribution()).__name__\n"
        "print('INSIDE', inside, 'AFTER', keras.distribution.distribution())\n",
        backend="jax")
    assert "INSIDE DataParallel AFTER None" in out
