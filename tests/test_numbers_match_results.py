"""Numbers quoted in the docs equal the results files they come from.

A Markdown file (README.md, or any file under docs/) marks each table or sentence that
quotes a results file:

    <!-- results: docs/results/train_step.json -->
    | backend | BiPer ms/step | float ms/step | BiPer / float |
    | tensorflow | 312 | 297 | 1.05 |
    <!-- /results -->

The path is relative to the repository root; a block that quotes several files names
them all, separated by spaces. Every number shown in the block must equal, at the
precision it is shown with, a number stored in one of those JSON files (any value, at any
depth): "312" matches 311.6, "1.05" matches 1.049, "10,000" matches 10000. Numbers inside
`inline code` (commands, arguments) and numbers that are part of a word or a date
(ResNet-20, x86-64, 2026-12-03, 32², v2.21.0) are not checked. So a table left standing
after its file was re-measured, or a number typed in by hand, fails here; rerun the
benchmark's command and copy its Markdown output (or `--replot`) into the block.

A script that writes a results file stores the ratios it quotes next to the raw times
(benchmarks/train_step.py: `ratios`, `targets`), so that derived numbers are checkable
too.
"""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!--\s*results:\s*(.+?)\s*-->(.*?)<!--\s*/results\s*-->", re.S)
CODE = re.compile(r"`[^`\n]*`")
# A number not glued to a word, a dash, a slash or a dot on either side (1.05, 312,
# 10,000); a trailing sentence dot or a unit sign (x, ×, %) may follow.
NUMBER = re.compile(r"(?<![\w\-/.²])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w\-/²]|\.\d)")


def markdown_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def json_numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from json_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_numbers(v)


def shown_numbers(text):
    """(text as shown, value, decimals) of each checked number in a block."""
    text = CODE.sub(" ", text)
    for m in NUMBER.finditer(text):
        whole, decimals = m.group(1).replace(",", ""), m.group(2) or ""
        yield m.group(0), float(f"{whole}.{decimals}" if decimals else whole), len(decimals)


def mismatches(block, numbers):
    """The numbers in `block` that no value in `numbers` rounds to."""
    wrong = []
    for shown, value, decimals in shown_numbers(block):
        half = 0.5 * 10.0 ** -decimals + 1e-9 * max(1.0, abs(value))
        if not any(abs(n - value) <= half for n in numbers):
            wrong.append(shown)
    return wrong


def marked_blocks():
    for md in markdown_files():
        text = md.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            yield pytest.param(md, m.group(1), m.group(2), id=f"{md.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("markdown, sources, block", list(marked_blocks()))
def test_every_number_in_a_marked_block_is_in_its_results_file(markdown, sources, block):
    numbers = []
    for source in sources.split():
        path = ROOT / source
        assert path.is_file(), f"{markdown.name}: the results file {source} does not exist"
        numbers += json_numbers(json.loads(path.read_text(encoding="utf-8")))
    assert list(shown_numbers(block)), f"{markdown.name}: a results block for {sources} shows no number"
    wrong = mismatches(block, numbers)
    assert not wrong, f"{markdown.name}: numbers not in {sources} (rerun its command, copy its output): {wrong}"


def test_the_training_step_results_are_quoted_in_the_results_page():
    for md in (ROOT / "docs" / "results.md",):
        sources = [s for m in BLOCK.finditer(md.read_text(encoding="utf-8")) for s in m.group(1).split()]
        assert "docs/results/train_step.json" in sources, md


def test_the_check_catches_a_stale_number_and_skips_words_code_and_dates():
    numbers = [311.6, 296.9, 1.0494, 128, 10000]
    good = "| tensorflow | 312 | 297 | 1.05 |\nbatch 128, 10,000 images, ResNet-20 on x86-64, 2026-12-03, `--rounds 7`."
    assert mismatches(good, numbers) == []
    assert [s for s, _, _ in shown_numbers(good)] == ["312", "297", "1.05", "128", "10,000"]
    assert mismatches("| tensorflow | 382 | 297 | 1.15 |", numbers) == ["382", "1.15"]
    assert mismatches("BiPer / Larq = 0.97×.", numbers) == ["0.97"]


def test_the_training_step_files_ratios_and_verdicts_follow_from_its_times():
    saved = json.loads((ROOT / "docs" / "results" / "train_step.json").read_text(encoding="utf-8"))
    assert saved["meta"]["command"].startswith("python benchmarks/train_step.py")
    for backend, ratios in saved["ratios"].items():
        times = saved["results"][backend]
        for name, ratio in ratios.items():
            num, den = name.split("/")  # the median of the rounds' ratios (paired within a round)
            per_round = sorted(a / b for a, b in zip(times["raw_ms"][num], times["raw_ms"][den]))
            middle = len(per_round) // 2
            median = per_round[middle] if len(per_round) % 2 else (per_round[middle - 1] + per_round[middle]) / 2
            assert ratio == round(median, 2), (backend, name)
    reference = saved["results"]["pytorch"]
    for name, ratio in saved["reference_ratios"].items():
        backend, rest = name.split(" ")
        num, den = rest.split("/")
        assert ratio == round(saved["results"][backend][num] / reference[den], 2), name
    for target in saved["targets"]:
        assert target["measured"] == saved["ratios"][target["backend"]][target["ratio"]]
        assert target["met"] == (target["measured"] <= target["limit"])
