"""The README's snippets as a reader copies them: its Python blocks run as printed (the
side-by-side Larq/biper-keras block column by column, its layer put in a one-layer model),
its `biper-keras` command lines (and docs/results.md's) parse, and a printed line it quotes
is what the command prints. A rename that the README does not follow fails here."""

import pathlib
import re
import shlex

import numpy as np
import pytest

from helpers import run_cli_here
from shared_processes import BACKEND_SCRIPTS, LARQ_SCRIPTS, script_output

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
PLUGIN = block_after("### Larq plugin", "python")
BOTH_WAYS = block_after("The same binary layer, both ways:", "python")


def both_ways_columns():
    """The side-by-side block's two columns: Larq's on the left, ours from the column
    where the second header comment starts."""
    lines = BOTH_WAYS.splitlines()
    cut = lines[0].index("# biper-keras")
    return "\n".join(l[:cut].rstrip() for l in lines), "\n".join(l[cut:] for l in lines)


def as_script(column, imports):
    """A column as a script: the layer goes into a one-layer `model`, which the
    summary and conversion lines name."""
    code = re.sub(r"^(lq\.layers|bk)\.QuantConv2D\(", r"layer = \1.QuantConv2D(", column, flags=re.M)
    build = "model = Sequential([Input((8, 8, 16)), layer])\n"
    code = code.replace("lq.models.summary(model)", build + "lq.models.summary(model)")
    code = code.replace("bk.summary(model)", build + "bk.summary(model)")
    return imports + code + "\n"


def test_every_python_block_is_one_of_the_checked_ones():
    python_blocks = [code for _, lang, code in BLOCKS if lang == "python"]
    assert python_blocks == [THIRTY_SECONDS, BOTH_WAYS, PLUGIN]


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


def test_our_column_of_the_side_by_side_block_runs(capsys):
    _, ours = both_ways_columns()
    scope = {}
    code = as_script(ours, "from keras import Input, Sequential\n")
    exec(compile(code.replace("bk.convert.convert(model)", "result = bk.convert.convert(model)"), "README-ours", "exec"),
         scope)
    assert "binarized MACs: 1.0000" in capsys.readouterr().out  # bk.summary printed
    assert scope["result"].to_dict()["ops"].get("LceBconv2d") == 1


LARQ_SCRIPTS["readme_plugin"] = PLUGIN + (
    "\nprint('README-PLUGIN', type(lq.quantizers.get('biper')).__module__, lq.quantizers.get('biper').omega)\n")
LARQ_SCRIPTS["readme_larq_column"] = as_script(
    both_ways_columns()[0],
    "from tf_keras import Input, Sequential\n",
).replace("lce.convert_keras_model(model)", "print('README-LCE', len(lce.convert_keras_model(model)) > 0)")


def test_larq_plugin_block_registers_biper_in_larq(larq_results):
    out = script_output(larq_results[1], "readme_plugin")
    assert "README-PLUGIN biper_keras.larq_interop" in out and out.split()[-1] == "20.0", out


def test_larq_column_of_the_side_by_side_block_runs(larq_results):
    out = script_output(larq_results[1], "readme_larq_column")
    assert "README-LCE True" in out and "Ratio of MACs that are binarized" in out, out


def command_lines(blocks):
    """Every `biper-keras ...` line of `blocks`' bash blocks, continuations joined,
    comments dropped, a `...` placeholder filled in as a reader would."""
    lines = []
    for _, lang, code in blocks:
        if lang != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("biper-keras "):
                line = line.replace("--data ...", "--data data").replace("train ...", "train --out runs/r20")
                lines.append(shlex.split(line, comments=True)[1:])
    return lines


def test_every_command_line_parses():
    from biper_keras.cli import build_parser

    lines = command_lines(BLOCKS)
    assert len(lines) >= 11 and {argv[0] for argv in lines} >= {"train", "convert", "benchmark", "qe"}
    docs = command_lines(fenced_blocks((ROOT / "docs" / "results.md").read_text()))
    assert len(docs) >= 5  # the full-scale recipes
    for argv in lines + docs:
        if argv[0] == "quickstart":
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as err:
            pytest.fail(f"README command `biper-keras {' '.join(argv)}` does not parse (exit {err.code})")


def test_qe_curve_prints_what_the_readme_quotes(tmp_path, capsys):
    block = block_after("### Quantization error", "bash")
    command, quoted = block.splitlines()[:2]
    out = "docs/figures/qe_curve.png"
    assert command.startswith("biper-keras qe curve ") and out in command
    argv = shlex.split(command)[1:]
    argv[argv.index(out)] = str(tmp_path / "qe.png")
    result = run_cli_here(capsys, *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == quoted.lstrip("# ").replace(out, str(tmp_path / "qe.png"))
