"""`timebank witnesses ...`: the witnesses a book's log asks to cosign its checkpoints (wired
into app/cli.py). Running a witness is `timebank witness ...`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console

from app.config import get_settings

witnesses_cli = typer.Typer(
    help="The witnesses a book's log asks to cosign its checkpoints.", no_args_is_help=True
)
console = Console(stderr=True)
T = TypeVar("T")


def _on_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on a connection to the service's database (resolved before the event loop
    starts: resolving may start the embedded server)."""
    from app.db import resolve_database
    from app.kit.pg_pool import connect

    url = resolve_database(get_settings()).app

    async def run() -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


@witnesses_cli.command("add")
def add(
    book: Annotated[str, typer.Option(help="the book whose checkpoints it cosigns")],
    vkey: Annotated[str, typer.Option(help="the witness's cosigner key (vkey, type 0x04)")],
    url: Annotated[str, typer.Option(help="the witness's submission prefix (http(s) URL)")],
) -> None:
    """Add a witness to a book (or change its key or URL); it is asked from the next round."""
    from app.audit.witness_config import add_witness
    from app.kit.problems import TimebankError

    async def run(conn: asyncpg.Connection) -> str:
        return (await add_witness(conn, book, vkey, url)).name

    try:
        name = _on_database(run)
    except TimebankError as exc:
        console.print(f"refused: {exc.detail}")
        raise typer.Exit(1) from None
    print(name)


@witnesses_cli.command("remove")
def remove(
    book: Annotated[str, typer.Option(help="the book")],
    name: Annotated[str, typer.Option(help="the witness's name (its key name)")],
) -> None:
    """Stop asking a witness; the cosignatures it gave stay with their checkpoints."""
    from app.audit.witness_config import remove_witness

    async def run(conn: asyncpg.Connection) -> bool:
        return await remove_witness(conn, book, name)

    if not _on_database(run):
        console.print(f"book {book!r} has no witness {name!r}")
        raise typer.Exit(1)


@witnesses_cli.command("list")
def list_witnesses(
    book: Annotated[str | None, typer.Option(help="one book (default: every book)")] = None,
) -> None:
    """Each witness: book, name, the size it last cosigned, and any error or refusal."""
    from app.audit.witness_config import WitnessStatus, witness_statuses

    async def run(conn: asyncpg.Connection) -> list[WitnessStatus]:
        return await witness_statuses(conn, book)

    print("book witness cosigned_size state")
    for w in _on_database(run):
        state = f"REFUSED: {w.refusal}" if w.alarm else (w.last_error or "ok")
        size = "-" if w.cosigned_size is None else str(w.cosigned_size)
        print(w.book, w.name, size, state)
