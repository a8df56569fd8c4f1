"""Everything the CLI shows: results on stdout (a table, a line, or JSON), progress and messages on
stderr. One renderer for every command's progress (wmcli.base.progress.Progress) and one for
every table of (label, value) rows, so all commands look and behave alike.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table

from wmcli.base.progress import Progress, starts_over


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


def print_columns(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A result as a table with a header row on stdout (several values per row); columns of
    numbers are aligned right."""
    t = Table(title=title)
    for i, name in enumerate(header):
        numeric = bool(rows) and all(r[i][:1] in "0123456789-" for r in rows)
        t.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        t.add_row(*row)
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
    Console(stderr=True).print(text, highlight=False, soft_wrap=True)


def run_event(e) -> None:
    """One line of news from `wmcli run` (wmcli.run.Event) on stderr."""
    if e.phase in ("result", "estimate"):
        heading(f"  [dim]epoch {e.epoch}[/dim] {e.text}")
    elif e.phase == "plan":
        heading(f"[bold]plan[/bold]: {e.text}")
    else:
        heading(f"[bold]epoch {e.epoch}[/bold] {e.phase}: {e.text}")


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
def progress(enabled: bool = True, every: float = 10.0):
    """Yield an on_progress callback that shows every Progress on stderr: a bar per task on a
    terminal (shown from its first report on, so set-up errors print alone), else a plain line per
    task at most every `every` seconds and when it completes (logs, CI, pipes). None when disabled."""
    if not enabled:
        yield None
        return
    err = Console(stderr=True)
    if not err.is_terminal:
        yield _plain_lines(err, every)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    bar = Bar(*columns, console=err)
    tasks: dict[str, int] = {}
    seen: dict[str, Progress] = {}

    def report(p: Progress) -> None:
        if not bar.live.is_started:
            bar.start()
        if p.task not in tasks:
            tasks[p.task] = bar.add_task(p.task, total=p.total, info="")
        elif starts_over(seen[p.task], p):
            bar.reset(tasks[p.task], total=p.total)  # the next epoch's run: its own clock and count
        seen[p.task] = p
        bar.update(tasks[p.task], completed=p.done, total=p.total, info=describe(p))

    try:
        yield report
    finally:
        if bar.live.is_started:  # stopping a bar that never started prints an empty line
            bar.stop()


def _plain_lines(err: Console, every: float):
    """Progress as plain lines: `train-wm: 250/400 steps (62%), 1m05s elapsed, eta 39s, denoiser 0.0123 ...`."""
    started: dict[str, float] = {}
    last: dict[str, float] = {}
    seen: dict[str, Progress] = {}

    def report(p: Progress) -> None:
        now = time.monotonic()
        finished = p.total is not None and p.done >= p.total
        before = seen.get(p.task)
        seen[p.task] = p
        if starts_over(before, p):
            last.pop(p.task, None)  # the same task run again (the next epoch of a run): a new line series
            started.pop(p.task, None)
        if last.get(p.task) == float("inf"):
            return  # the task's last line is out already
        t0 = started.setdefault(p.task, now)
        if not finished and now - last.get(p.task, -float("inf")) < every:
            return
        last[p.task] = float("inf") if finished else now
        elapsed = p.seconds if p.seconds is not None else now - t0  # the loop's own clock, when it has one
        parts = [f"{p.task}: {p.done}/{p.total} {p.unit}" if p.total else f"{p.task}: {p.done} {p.unit}"]
        if p.total:
            parts[0] += f" ({100 * p.done / p.total:.0f}%)"
        parts.append(f"{_clock(elapsed)} elapsed")
        if p.total and 0 < p.done < p.total and elapsed >= 2:  # a rate from a second or less is noise
            parts.append(f"eta {_clock(elapsed * (p.total - p.done) / p.done)}")
        err.print(", ".join(parts) + ("  " + describe(p) if p.stats else ""), highlight=False, soft_wrap=True)

    return report


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
