"""The one way a command that writes the journal in bulk asks before it writes.

The command shows what it would write first, then: `--dry-run` stops there; `--yes` writes;
on a terminal a `y` writes and anything else writes nothing; with no terminal and no `--yes`
(a cron job, a script) nothing is written and the command exits 2 saying to pass `--yes`. The
last case holds even when there is nothing to write, so that a job missing `--yes` fails on
its first run, not on the first day it has something to do.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

# Exit statuses: a refused answer at the terminal, and no terminal to ask on.
DECLINED = 1
NOT_CONFIRMED = 2

YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="write without asking (what a cron job or script passes)"),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="show what would be written, write nothing")
]


def interactive() -> bool:
    """Whether a person can answer a question: stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm_write(
    console: Console, question: str, *, yes: bool, dry_run: bool, anything: bool = True
) -> bool:
    """After the plan was shown on `console`: True to write it, False to stop with status 0
    (a dry run, or nothing to write asked on a terminal); exits 1 when the person answers no
    and 2 when nobody can be asked and `--yes` was not given."""
    if dry_run:
        console.print("dry run: nothing written")
        return False
    if yes:
        return True
    if not interactive():
        console.print(
            "nothing written: no terminal to ask on; pass --yes to write (as a cron job or "
            "script should), or --dry-run to only see the plan",
            soft_wrap=True,
        )
        raise typer.Exit(NOT_CONFIRMED)
    if not anything:
        console.print("nothing to write")
        return False
    console.print(f"{question} [y/N] ", end="", markup=False, highlight=False, soft_wrap=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        console.print("nothing written")
        raise typer.Exit(DECLINED)
    return True
