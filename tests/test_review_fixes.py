"""The fixes of the maintainers' review: each test failed on the code before its fix."""

import pathlib
import re

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
