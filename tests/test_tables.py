"""The text tables of reports and the CLI (biper_keras._tables, rendered by rich)."""

from biper_keras._tables import render


def test_columns_align_numbers_right_and_keep_every_cell():
    text = render(("layer", "params"), [("conv", 1), ("a_long_layer_name", "12,345")], right=(1,))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "params"] and set(lines[1]) == {"─"}
    assert [l.split() for l in lines[2:]] == [["conv", "1"], ["a_long_layer_name", "12,345"]]
    # Right-aligned: every row's last cell ends in the same column; left-aligned names start at 0.
    assert len({len(l) for l in lines[2:]}) == 1 and lines[2].startswith("conv ")
    assert all(l == l.rstrip() for l in lines)


def test_footer_sits_below_a_rule_and_nothing_wraps():
    wide = "x" * 300  # wider than any terminal: rich would wrap it at 80 columns by default
    lines = render(("name", "n"), [(wide, 1)], right=(1,), footer=("total", 1)).splitlines()
    assert lines[2].split() == [wide, "1"] and set(lines[3]) == {"─"} and lines[4].split() == ["total", "1"]
    assert "\x1b" not in "".join(lines)  # no colour codes, even if stdout were a terminal
