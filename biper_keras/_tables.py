"""Plain-text tables for reports and the CLI, rendered by `rich` (a Keras dependency)."""

import io


def render(header, rows, *, right=(), footer=None):
    """The table of `rows` (sequences of cells, turned into strings) under `header`, as a
    string with no colour codes and no wrapping. Columns whose index is in `right` are
    right-aligned (numbers); `footer` is one more row below a rule (totals)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, show_footer=footer is not None)
    for i, name in enumerate(header):
        table.add_column(str(name), justify="right" if i in right else "left", no_wrap=True,
                         footer="" if footer is None else str(footer[i]))
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    buffer = io.StringIO()
    # A wide virtual console: rich would otherwise wrap to 80 columns when stdout is not a terminal.
    Console(file=buffer, width=10_000, color_system=None, force_terminal=False, soft_wrap=False,
            highlight=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))
