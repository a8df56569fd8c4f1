"""Everything the CLI shows: results on stdout (a table, a line, or JSON), progress and messages on
stderr. One renderer for every command's progress (wmcli.base.progress.Progress) and one for
every table of (label, value) rows, so all commands look and behave alike.
"""

from __future__ import annotations

import contextlib
import json
import sys

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table

from wmcli.base.progress import Progress


def json_text(obj) -> str:
    return json.dumps(obj, indent=2)


def print_json(obj) -> None:
    """A result as JSON on stdout (for scripts: `--json`)."""
    sys.stdout.write(json_text(obj) + "\n")


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A result as a two-column table on stdout."""
    t = Table(title=title, show_header=False)
    for label, value in rows:
        t.add_row(label, value)
    Console(soft_wrap=False).print(t)


def say(text: str, err: bool = False) -> None:
    """One plain line of result (stdout) or of news (stderr)."""
    typer.echo(text, err=err)


def error(text: str) -> None:
    typer.echo(f"wmcli: error: {text}", err=True)


def warn(text: str) -> None:
    typer.echo(f"wmcli: warning: {text}", err=True)


def note(text: str) -> None:
    typer.echo(f"wmcli: {text}", err=True)


def heading(text: str) -> None:
    """A phase of a long command, on stderr."""
    Console(stderr=True).print(text)


def number(x) -> str:
    """A progress figure at a sensible precision: 912, 3.14, 0.0123."""
    if x is None:
        return "-"
    if isinstance(x, int) or abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.4f}"


def describe(p: Progress) -> str:
    return "  ".join(f"{name} {number(value)}" for name, value in p.stats.items())


@contextlib.contextmanager
def progress(enabled: bool = True):
    """Yield an on_progress callback that draws every Progress as a bar on stderr (one bar per
    task, shown from its first report on, so set-up errors print alone); None when disabled."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    bar = Bar(*columns, console=Console(stderr=True))
    tasks: dict[str, int] = {}

    def report(p: Progress) -> None:
        if not bar.live.is_started:
            bar.start()
        if p.task not in tasks:
            tasks[p.task] = bar.add_task(p.task, total=p.total, info="")
        bar.update(tasks[p.task], completed=p.done, total=p.total, info=describe(p))

    try:
        yield report
    finally:
        if bar.live.is_started:  # stopping a bar that never started prints an empty line
            bar.stop()
