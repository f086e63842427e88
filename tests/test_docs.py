"""The documentation site as a reader uses it: every Python block of the guides runs (each
page's blocks in order, in one namespace, as a reader pastes them; the Larq ones in the
session's Larq process; the side-by-side Larq/biper-keras block column by column), every
`biper-keras` command line parses, `mkdocs build --strict` passes (a broken link, anchor,
snippet or reference fails it; built with larq, TensorFlow and Keras unimportable), every
name in a public module's `__all__` has its entry in the built API reference, every page is
in the navigation and the plots are shown."""

import ast
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from helpers import accuracy_of, run_cli_here
from shared_processes import LARQ_SCRIPTS, script_output

ROOT = pathlib.Path(__file__).parents[1]
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))
README = (ROOT / "README.md").read_text()

# The modules the API reference documents, one page each (docs/reference/<name>.md).
PUBLIC_MODULES = ["quantizers", "layers", "constraints", "metrics", "regularizers", "optimizers", "context",
                  "models", "summary", "binarize", "rebuild", "convert", "benchmark", "analysis", "training",
                  "recipe", "data", "device_data", "larq_interop", "cli"]


def fenced_blocks(text):
    """(offset, language, code) of every fenced block of a Markdown text."""
    return [(m.start(), *m.groups()) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def python_blocks(path):
    return [code for _, lang, code in fenced_blocks(path.read_text()) if lang == "python"]


def readme_thirty_seconds():
    start = README.index("## 30 seconds")
    return next(code for at, lang, code in fenced_blocks(README) if at > start and lang == "python")


# Guides whose Python is not run (none: a page added here stays visible in the diff).
NOT_RUN = set()


def kind(code):
    """How a guide's Python block is checked: in the Larq process (it sets
    TF_USE_LEGACY_KERAS), column by column (the side-by-side block), as the README's own
    30-second block (tests/test_readme.py runs it on all three backends), or here."""
    if code.startswith("# Larq (tf_keras, Keras 2)"):
        return "columns"
    if 'os.environ["TF_USE_LEGACY_KERAS"] = "1"' in code:
        return "larq"
    if code == readme_thirty_seconds():
        return "readme"
    return "here"


def page_id(path):
    return path.stem


LARQ_BLOCKS = {f"docs_{page_id(p)}_{i}": code for p in GUIDES if page_id(p) not in NOT_RUN
               for i, code in enumerate(c for c in python_blocks(p) if kind(c) == "larq")}


def test_every_guide_has_runnable_code_and_every_block_is_checked():
    kinds = {page_id(p): [kind(c) for c in python_blocks(p)] for p in GUIDES}
    assert set(kinds) >= {"quickstart", "training", "proxconnect", "larq", "deploying", "reproducing",
                          "reliability", "contributing"}
    # Reproducing and Contributing are commands (bash); every other guide runs Python.
    assert all(code for page, code in kinds.items() if page not in ("reproducing", "contributing"))
    assert kinds["larq"] == ["columns", "larq", "larq"]
    assert kinds["quickstart"].count("readme") == 1  # the README's block, checked there
    assert not any(kinds[page] for page in ("reproducing", "contributing"))


HERE_PAGES = [p for p in GUIDES if page_id(p) not in NOT_RUN and any(kind(c) == "here" for c in python_blocks(p))]
# Pages whose code builds, fits and converts small models in seconds; the others train
# (the training page two stages, the reliability page one stage twice): over 20 s each on
# the 2-core machine, and a new page is counted with them until measured.
FAST_PAGES = {"quickstart", "proxconnect", "deploying"}


@pytest.mark.parametrize("page", [pytest.param(p, id=page_id(p), marks=[] if page_id(p) in FAST_PAGES
                                               else [pytest.mark.slow]) for p in HERE_PAGES])
def test_guide_python_blocks_run_in_order(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # blocks write runs/, model.tflite where the reader stands
    scope = {"__name__": "__main__"}
    for i, code in enumerate(c for c in python_blocks(page) if kind(c) == "here"):
        exec(compile(code, f"{page.name}[{i}]", "exec"), scope)
    out, err = capsys.readouterr()
    # A page's own checks compare what its code printed and made with an independent
    # computation; a page without them is checked by its blocks' own asserts and errors.
    if page_id(page) in CHECKS:
        CHECKS[page_id(page)](scope, out, tmp_path, err)


def check_quickstart(scope, out, folder, err):
    # Larq's rules count every weight but batch norm's moving statistics.
    resnet = scope["resnet"]
    moving = sum(int(np.prod(w.shape)) for w in resnet.weights if "moving" in w.path)
    assert f"{resnet.count_params() - moving:,} parameters" in out, out[-2000:]
    assert "binarized MACs: 0.98" in out and f"{scope['stats'].binary_mac_ratio:.0%}" == "99%"


def check_training(scope, out, folder, err):
    summary = scope["summary"]
    assert (folder / "runs" / "trial" / "stage2" / "model.keras").is_file()
    assert summary["stage1"]["epochs"] == 1 and summary["stage2"]["epochs"] == 1, summary
    # The reported accuracy is the saved stage-2 model's on the page's test split.
    import keras

    stage2 = keras.models.load_model(folder / "runs" / "trial" / "stage2" / "model.keras")
    assert summary["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(stage2, scope["data"].test), abs=1e-6)
    assert scope["recipe"].stage1.lr == 0.021 and scope["recipe"].stage2.lr == 0.0037  # the paper's
    from biper_keras.optimizers import CoupledSGD

    assert isinstance(scope["optimizer"], CoupledSGD)  # the authors' coupled weight decay
    x_star, qe_star = scope["analysis"].laplace_qe_max()
    assert f"({x_star}, {qe_star})" in out and abs(qe_star - 0.102835) < 1e-6
    assert f"{scope['analysis'].suggest_omega(b=0.05, x=1.0)}" in out
    rows = scope["analysis"].qe_report(scope["model"])
    assert len(rows) > 0 and all(row["omega"] == 20.0 for row in rows)


def check_proxconnect(scope, out, folder, err):
    # BiPer's printed gradient is omega*cos(omega*x), the forward of every sign binarizer +-1.
    lines = dict(line.split(":", 1) for line in out.splitlines() if line.startswith(("BiPer B'", "expected")))
    assert lines["BiPer B'"] == lines["expected"], out
    for name in ["biper", "ste_sign", "approx_sign", "bc", "bnn", "bnn_plus", "swish_sign"]:
        row = next(line for line in out.splitlines() if line.startswith(f"{name:12s} F:"))
        assert set(re.findall(r"-?\d+\.?\d*", row.split("F:")[1])) <= {"-1.", "1.", "-1", "1"}, row
    mus = scope["training"].annealed_quantizers(scope["model"])
    assert [round(float(q.mu), 4) for q in mus] == [16.0]  # annealed to the end in 2 epochs
    assert scope["quantizers"].get("sign_triangle").__class__.__name__ == "SignWithTriangle"
    assert "SignWithTriangle" in out
    hard = scope["hard"]
    x = np.random.rand(4, 8, 8, 3).astype("float32")
    assert np.isfinite(np.asarray(hard.predict(x, verbose=0))).all()


def check_deploying(scope, out, folder, err):
    result = scope["result"]
    assert result.ops.get("LceBconv2d") == 2 and not result.unfused
    assert result.parity is not None and result.parity.passed
    assert (folder / "model.tflite").read_bytes() == result.flatbuffer
    assert [l.layer for l in result.layers if l.fused] == ["binary_1", "binary_2"]
    import biper_keras as bk

    binary = scope["binary_model"]
    assert sum(isinstance(l, bk.QuantConv2D) for l in binary.layers) == 1  # first and last stay float


def check_reliability(scope, out, folder, err):
    # Each bad argument is named with the value it got.
    assert "omega=0" in out and "pad_values" in out and "'sine'" in out, out
    from biper_keras import cli

    assert scope["code"] == cli.EXIT_INPUT == 3 and "exit code 3" in out
    lines = [l for l in err.splitlines() if l.startswith("biper-keras")]
    assert len(lines) == 1 and "missing.keras" in lines[0] and "Traceback" not in err, err
    assert build_parser_epilog() in out
    # Stopped in epoch 2: epoch 1 was committed; the resumed run ran epoch 2 only, once.
    assert "stopped; committed: {'stage': 2, 'epochs_done': 1, 'checkpoint': 'checkpoint-0001.keras'}" in out, out
    assert "done: {'stage': 2, 'epochs_done': 2, 'checkpoint': 'checkpoint-0002.keras'}" in out, out
    log = (folder / "runs" / "bc" / "stage2" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1"], log


def build_parser_epilog():
    from biper_keras.cli import build_parser

    return build_parser().epilog


def check_vit(scope, out, folder, err):
    import json

    import keras

    # Each fine-tuning run records its float model; each reported accuracy is its saved model's.
    for name in ("bnn_pp", "biper"):
        assert json.loads((folder / "runs" / f"vit-{name}" / "run.json").read_text())["recipe"]["init_from"] \
            == scope["float_model"]
    for name, run in (("bnn_pp", scope["bnn_pp"]), ("biper", scope["biper"]), ("bnn_pp-e2e", scope["e2e"])):
        saved = keras.models.load_model(folder / "runs" / f"vit-{name}" / "stage2" / "model.keras")
        assert run["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(saved, scope["data"].test), abs=1e-6)


CHECKS = {"vit": check_vit, "quickstart": check_quickstart, "reliability": check_reliability, "training": check_training, "proxconnect": check_proxconnect,
          "deploying": check_deploying}


def test_the_guides_of_this_issue_have_their_checks():
    assert set(CHECKS) <= {page_id(p) for p in HERE_PAGES}
    assert set(CHECKS) == {"quickstart", "training", "proxconnect", "deploying", "reliability", "vit"}


# The Larq page's blocks that need tf_keras run in the session's Larq process.
LARQ_SCRIPTS.update({name: code + "\nprint('DOCS-BLOCK-DONE')\n" for name, code in LARQ_BLOCKS.items()})


@pytest.mark.parametrize("name", sorted(LARQ_BLOCKS))
def test_larq_guide_blocks_run_in_the_larq_process(name, larq_results):
    out = script_output(larq_results[1], name)
    assert out.rstrip().endswith("DOCS-BLOCK-DONE"), out
    if "to_larq" in LARQ_BLOCKS[name]:
        assert float(out.split()[-2]) == 0.0, out  # the round trip gives the outputs back exactly


# The side-by-side block, column by column: each column's layer in a one-layer model.
LARQ_PAGE = (DOCS / "guides" / "larq.md").read_text()
BOTH_WAYS = next(c for c in python_blocks(DOCS / "guides" / "larq.md") if kind(c) == "columns")


def both_ways_columns():
    """Larq's column on the left, ours from the column where the second header starts."""
    lines = BOTH_WAYS.splitlines()
    cut = lines[0].index("# biper-keras")
    return "\n".join(l[:cut].rstrip() for l in lines), "\n".join(l[cut:] for l in lines)


def as_script(column, imports):
    code = re.sub(r"^(lq\.layers|bk)\.QuantConv2D\(", r"layer = \1.QuantConv2D(", column, flags=re.M)
    build = "model = Sequential([Input((8, 8, 16)), layer])\n"
    code = code.replace("lq.models.summary(model)", build + "lq.models.summary(model)")
    code = code.replace("bk.summary(model)", build + "bk.summary(model)")
    return imports + code + "\n"


def test_our_column_of_the_side_by_side_block_runs(capsys):
    _, ours = both_ways_columns()
    scope = {}
    code = as_script(ours, "from keras import Input, Sequential\n")
    exec(compile(code.replace("bk.convert.convert(model)", "result = bk.convert.convert(model)"), "larq.md-ours",
                 "exec"), scope)
    assert "binarized MACs: 1.0000" in capsys.readouterr().out  # bk.summary printed
    assert scope["result"].to_dict()["ops"].get("LceBconv2d") == 1


LARQ_SCRIPTS["docs_larq_column"] = as_script(
    both_ways_columns()[0], "from tf_keras import Input, Sequential\n",
).replace("lce.convert_keras_model(model)", "print('DOCS-LCE', len(lce.convert_keras_model(model)) > 0)")


def test_larq_column_of_the_side_by_side_block_runs(larq_results):
    out = script_output(larq_results[1], "docs_larq_column")
    assert "DOCS-LCE True" in out and "Ratio of MACs that are binarized" in out, out


def command_lines(text):
    """Every `biper-keras ...` line of a Markdown text's bash blocks, continuations joined,
    comments dropped, a `...` placeholder filled in as a reader would."""
    lines = []
    for _, lang, code in fenced_blocks(text):
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

    pages = {p.name: command_lines(p.read_text()) for p in [*GUIDES, DOCS / "results.md", DOCS / "index.md"]}
    every = [argv for lines in pages.values() for argv in lines]
    assert len(pages["results.md"]) >= 5  # the full-scale recipes
    assert {argv[0] for argv in every} >= {"train", "convert", "benchmark", "qe", "quickstart"}
    assert any("adb" in argv for argv in pages["deploying.md"] for argv in [" ".join(argv)])
    for page, lines in pages.items():
        for argv in lines:
            try:
                build_parser().parse_args(argv)
            except SystemExit as err:
                pytest.fail(f"{page}: `biper-keras {' '.join(argv)}` does not parse (exit {err.code})")


def test_qe_curve_prints_what_the_training_guide_quotes(tmp_path, capsys):
    text = (DOCS / "guides" / "training.md").read_text()
    start = text.index("## Quantization error")
    block = next(code for at, lang, code in fenced_blocks(text) if at > start and lang == "bash")
    command, quoted = block.splitlines()[:2]
    out = "docs/figures/qe_curve.png"
    assert command.startswith("biper-keras qe curve ") and out in command
    argv = shlex.split(command)[1:]
    argv[argv.index(out)] = str(tmp_path / "qe.png")
    result = run_cli_here(capsys, *argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == quoted.lstrip("# ").replace(out, str(tmp_path / "qe.png"))


def module_all(name):
    """A module's `__all__`, read from its source (nothing imported)."""
    path = ROOT / "biper_keras" / name
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    if name == "__init__":
        source = ROOT / "biper_keras" / "__init__.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"biper_keras.{name} has no __all__")


def nav_pages():
    """The pages `mkdocs.yml`'s nav lists (its lines `- Title: path.md`)."""
    return set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))


def test_the_reference_documents_the_modules_docs_api_md_lists():
    listed = re.findall(r"^## `biper_keras\.(\w+)`", (DOCS / "api.md").read_text(), re.M)
    assert sorted(listed) == sorted(PUBLIC_MODULES)


def test_every_page_is_in_the_navigation_and_every_public_module_has_a_reference_page():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    tables = {p for p in pages if p.startswith("results/")}  # included by the pages that show them
    assert pages - tables == nav_pages()
    for name in PUBLIC_MODULES:
        source = (DOCS / "reference" / f"{name}.md").read_text()
        assert f"::: biper_keras.{name}\n" in source


@pytest.fixture(scope="session")  # built once even when other modules' tests run in between
def site(tmp_path_factory):
    """`mkdocs build --strict` of the repository: (its output, the built site's folder).
    Built with larq, TensorFlow and Keras made unimportable: the reference is read from the
    source (griffe's static analysis), so larq_interop is documented without larq."""
    folder = tmp_path_factory.mktemp("site")
    blocked = tmp_path_factory.mktemp("unimportable")
    for name in ("larq", "tensorflow", "keras"):
        (blocked / name).mkdir()
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} imported by the docs build')\n")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(folder)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    return result, folder


def test_mkdocs_build_strict_passes(site):
    result, folder = site
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for guide in GUIDES:
        assert (folder / "guides" / guide.stem / "index.html").is_file()


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_has_a_reference_entry(site, name):
    result, folder = site
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    html = (folder / "reference" / name / "index.html").read_text()
    names = module_all(name)
    missing = [n for n in names if f'id="biper_keras.{name}.{n}"' not in html]
    assert names and not missing, f"biper_keras.{name}: no reference entry for {missing}"


def test_every_top_level_name_is_a_documented_module_or_a_name_of_one():
    """`bk.X` is a module with its reference page, or `biper_keras.<module>.X`, which has
    its entry there (checked above): the overview says so and shows examples."""
    imports = {alias.asname or alias.name: node.module
               for node in ast.parse((ROOT / "biper_keras" / "__init__.py").read_text()).body
               if isinstance(node, ast.ImportFrom) for alias in node.names}
    for name in module_all("__init__"):
        source = imports[name]
        if source == "biper_keras":
            assert name in PUBLIC_MODULES, f"biper_keras.{name}: no reference page"
        else:
            module = source.removeprefix("biper_keras.")
            assert module in PUBLIC_MODULES and name in module_all(module), f"bk.{name} from {source}"
    overview = (DOCS / "reference" / "index.md").read_text()
    assert "`bk.QuantConv2D` is `biper_keras.layers.QuantConv2D`" in overview


def test_plots_are_shown_and_measured_tables_included(site):
    result, folder = site
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    html = "".join(p.read_text() for p in folder.rglob("*.html"))
    shown = set(re.findall(r'<img [^>]*src="(?:\.\./)*([^"]+\.png)"', html))
    plots = {str(p.relative_to(DOCS)) for p in DOCS.glob("*/*.png")}
    assert plots <= shown, f"not shown as images: {plots - shown}"
    assert not re.findall(r'<a [^>]*href="[^"]+\.png"', html), "a plot is linked instead of shown"
    # Every measured table on the reproducing page is its script's Markdown, as written.
    page = (folder / "guides" / "reproducing" / "index.html").read_text()
    for table in sorted((DOCS / "results").glob("*.md")):
        first_row = next(l for l in table.read_text().splitlines() if l.startswith("|") and "---" not in l)
        cells = [c.strip() for c in first_row.strip("|").split("|")]
        assert all(f"<th>{c}</th>" in page or f"<td>{c}</td>" in page for c in cells[:2]), table.name
