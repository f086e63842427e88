"""The README as a newcomer reads it: one or two screens (at most 200 lines), its set-up
lines exactly the two that CI (`.ci/run`) runs, its 30-second block runs as printed (on
all three backends), and every link it has resolves: to a file of the repository and, with
an anchor, to a heading of that file. The guides' code is checked in tests/test_docs.py."""

import pathlib
import re

import numpy as np
import pytest

from shared_processes import BACKEND_SCRIPTS, script_output

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(text):
    """(offset, language, code) of every fenced block of a Markdown text."""
    return [(m.start(), *m.groups()) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


BLOCKS = fenced_blocks(README)


def block_after(marker, lang):
    """The first `lang` block after the README line holding `marker`."""
    start = README.index(marker)
    return next(code for at, kind, code in BLOCKS if at > start and kind == lang)


THIRTY_SECONDS = block_after("## 30 seconds", "python")


def test_the_readme_fits_on_two_screens():
    assert len(README.splitlines()) <= 200


def test_every_python_block_is_the_checked_one():
    assert [code for _, lang, code in BLOCKS if lang == "python"] == [THIRTY_SECONDS]


def test_set_up_lines_are_the_two_that_ci_runs():
    setup = block_after("## Set up", "bash").splitlines()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    install, test = setup
    assert install.startswith("pip install -c constraints.txt") and test == "python -m pytest -q"
    # The install line is .ci/run's, and its test command is the README's.
    assert ci[ci.index("# Install command (as in README.md):") + 1] == install
    assert ci[-1] == test


def github_anchor(heading):
    """GitHub's anchor of a Markdown heading (as the site's, pymdownx's slugify)."""
    from pymdownx.slugs import slugify

    return slugify(case="lower")(heading, "-")


def test_every_link_resolves():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [l for l in links if not l.startswith(("http://", "https://"))]
    assert len(local) >= 10
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+?)\s*$", target.read_text(), re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"README links to {link}: no such heading"


def test_headline_results_link_to_their_pages():
    table = README[README.index("## Headline results"):README.index("## Documentation")]
    rows = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("| what")]
    assert len(rows) >= 5 and all(re.search(r"\[[^]]+\]\(docs/[^)]+\) \|$", row) for row in rows), rows


def test_the_site_is_one_command_away():
    assert "`mkdocs serve`" in README and "(docs/index.md)" in README


def test_thirty_seconds_block_trains_a_binary_model():
    import biper_keras as bk

    scope = {}
    exec(compile(THIRTY_SECONDS, "README-30-seconds", "exec"), scope)
    model = scope["model"]
    assert int(model.optimizer.iterations) == 2 * 256 // 64  # epochs=2, batch_size=64
    binary = [l for l in model.layers if isinstance(l, bk.QuantConv2D)]
    assert len(binary) == 2
    with bk.context.quantized_scope(True):
        for layer in binary:
            kernel, alpha = np.asarray(layer.kernel), np.asarray(layer.alpha)
            np.testing.assert_allclose(np.abs(kernel), np.broadcast_to(alpha, kernel.shape), rtol=1e-6)
    logits = np.asarray(model.predict(scope["x"][:4], verbose=0))
    assert logits.shape == (4, 10) and np.isfinite(logits).all()


BACKEND_SCRIPTS["readme_thirty_seconds"] = (
    THIRTY_SECONDS + "\nimport keras\nprint('README-30S', keras.backend.backend(), int(model.optimizer.iterations))\n",
    ("jax", "torch"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_thirty_seconds_block_runs_on_the_other_backends(backend, backend_results):
    # "The same code runs with KERAS_BACKEND=jax or KERAS_BACKEND=torch."
    out = script_output(backend_results(backend), "readme_thirty_seconds")
    assert f"README-30S {backend} 8" in out, out


def test_the_quickstart_line_parses():
    from biper_keras.cli import build_parser

    lines = [line for _, lang, code in BLOCKS if lang == "bash" for line in code.splitlines()
             if line.startswith("biper-keras ")]
    assert lines == ["biper-keras quickstart"]
    assert build_parser().parse_args(lines[0].split()[1:]).command == "quickstart"
