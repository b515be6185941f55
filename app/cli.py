"""The `timebank` command: serve, follow-log, migrate, verify, export, demo, expire, openapi,
credentials, keys, audit, witnesses (a book's) and witness (running one)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from app.audit.commands import audit_cli, keys_cli
from app.audit.witness_commands import witnesses_cli
from app.config import Settings, get_settings
from app.kit.confirm import DryRunOption, YesOption, confirm_write
from app.kit.faults import arm_from_spec
from app.kit.pg_pool import connect
from app.logging import configure_logging, logging_config
from app.witness.commands import witness_cli

cli = typer.Typer(help="Timebank Ledger: volunteer hours and charity points.", no_args_is_help=True)
credentials_cli = typer.Typer(help="Bearer credentials.", no_args_is_help=True)
cli.add_typer(credentials_cli, name="credentials")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(witnesses_cli, name="witnesses")
cli.add_typer(witness_cli, name="witness")
console = Console(stderr=True)
log = structlog.get_logger("timebank.cli")

if TYPE_CHECKING:
    from app.db import DatabaseUrls
    from app.exchange.expiry.service import ExpirySummary


def _database(settings: Settings, migrate: bool = True) -> DatabaseUrls:
    """The database the settings name (the embedded one started if need be), migrated first
    unless `migrate` is false."""
    # Imported here: SQLAlchemy and Alembic are half the start-up of a command that needs no
    # database, such as `timebank audit verify`.
    from app import migrate as migrations
    from app.db import resolve_database

    urls = resolve_database(settings)
    if migrate:
        asyncio.run(migrations.upgrade(urls.owner, settings.app_role))
    return urls


def _progress(clock: ProgressColumn, transient: bool = False) -> Progress:
    """A progress display on stderr: each task's name, its bar, done of total, and `clock`."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        clock,
        console=console,
        transient=transient,
    )


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=32, help="server processes")] = 1,
) -> None:
    """Start the embedded PostgreSQL if needed, migrate, and serve the HTTP API."""
    settings = get_settings()
    # Everything this process and its workers write on stderr is a JSON line (app/logging.py).
    configure_logging(settings.log_level, settings.log_json)
    try:
        urls = _database(settings)
    except Exception:
        log.exception("serve.start_failed")
        raise typer.Exit(1) from None
    # Workers are separate processes: hand them the database the parent resolved.
    os.environ["TIMEBANK_DATABASE_URL"] = urls.app
    if "TIMEBANK_PUBLIC_URL" not in os.environ:
        # Unless set, a proof's QR link names the address and port this server listens on.
        os.environ["TIMEBANK_PUBLIC_URL"] = served_url(host, port)
    if workers > 1:
        metrics_dir = settings.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # One process follows the journals into the transparency log for all the workers, so that
    # their event loops only serve (docs/performance.md).
    os.environ["TIMEBANK_FOLLOW_LOG_IN_SERVER"] = "false"
    follower = subprocess.Popen([sys.executable, "-m", "app.cli", "follow-log", "--with-parent"])
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting normally instead lets the
    # embedded PostgreSQL's clean-up run (it stops when its last user process exits).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log.info("serve.started", url=f"http://{host}:{port}", workers=workers)
    try:
        run_uvicorn("app.main:create_app", host, port, workers, settings)
    finally:
        follower.terminate()
        try:
            follower.wait(timeout=10)
        except subprocess.TimeoutExpired:
            follower.kill()


def served_url(host: str, port: int) -> str:
    """The URL a server bound to `host`:`port` answers on; for a wildcard address, this
    machine's loopback (set TIMEBANK_PUBLIC_URL for the address others use)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run_uvicorn(factory: str, host: str, port: int, workers: int, settings: Settings) -> None:
    """Serve the ASGI app that `factory` ("module:function") makes, as `timebank serve` does:
    uvicorn's own log lines in the service's JSON (app/logging.py), no access log."""
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logging_config(settings.log_level, settings.log_json),
        log_level="warning",
        access_log=False,
    )


@cli.command("follow-log")
def follow_log(
    with_parent: Annotated[
        bool,
        typer.Option(help="stop when the process that started this one exits (as serve uses it)"),
    ] = False,
) -> None:
    """Follow every book's journal into the transparency log: integrate new entries into the
    Merkle trees and sign checkpoints (`timebank serve` runs one beside its workers)."""
    from app.audit.service import AuditLog

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    urls = _database(settings, migrate=False)
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if with_parent:  # Ctrl-C reaches the whole group: the parent stops this process itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def keep_going() -> bool:
        return not with_parent or os.getppid() == parent

    async def run() -> None:
        audit = await AuditLog.open(urls.app, settings)
        try:
            await audit.follow(settings.log_follow_interval_s, keep_going)
        finally:
            await audit.close()

    asyncio.run(run())


@cli.command()
def migrate() -> None:
    """Apply database migrations (as the owner role)."""
    from app import migrate as migrations

    settings = get_settings()
    _database(settings)
    console.print(f"database at migration {migrations.head_revision()}")


@cli.command()
def verify(
    book: Annotated[str | None, typer.Option(help="only this book")] = None,
) -> None:
    """Recompute every book's chain and balances from the journal; non-zero on any difference."""
    from app.ledger.verify import BookSummary, VerificationError
    from app.ledger.verify_runner import book_codes, open_reader, verify_book_with

    settings = get_settings()
    urls = _database(settings, migrate=False)

    async def run() -> list[BookSummary]:
        async with open_reader(urls.app) as reader:
            books = [(c, n) for c, n in await book_codes(reader.entries) if book in (None, c)]
            results = []
            with _progress(TimeRemainingColumn()) as progress:
                for code, size in books:
                    task = progress.add_task(f"book {code}", total=size)

                    def advance(n: int, task: TaskID = task) -> None:
                        progress.advance(task, n)

                    results.append(await verify_book_with(reader, code, advance))
            return results

    try:
        results = asyncio.run(run())
    except VerificationError as exc:
        print(f"FAILED book {exc.book} at seq {exc.seq}: {exc.reason}", file=sys.stderr)
        raise typer.Exit(1) from None
    table = Table("book", "entries", "accounts", "open holds", "head")
    for r in results:
        table.add_row(r.book, str(r.entries), str(r.accounts), str(r.open_holds), r.head[:16] + "…")
    Console().print(table)
    total = sum(r.entries for r in results)
    Console().print(f"OK: {len(results)} book(s), {total} entries verified")


@cli.command()
def export(
    book: Annotated[str, typer.Option(help="the book to export")],
    output: Annotated[Path | None, typer.Option(help="file to write (default stdout)")] = None,
) -> None:
    """Write a book's journal as JSON Lines: each entry object plus its `entry_hash`."""
    settings = get_settings()
    urls = _database(settings, migrate=False)

    async def run() -> None:
        conn = await connect(urls.app)
        if not await conn.fetchval("SELECT 1 FROM books WHERE code = $1", book):
            await conn.close()
            print(f"no book {book!r}", file=sys.stderr)
            raise typer.Exit(1)
        out = output.open("wb") if output else sys.stdout.buffer
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                async for row in conn.cursor(
                    "SELECT body, entry_hash FROM journal_entries WHERE book_code = $1 "
                    "ORDER BY seq",
                    book,
                ):
                    # The entry's JCS bytes with entry_hash added as the last member: no
                    # parsing or encoding, so an entry of any depth is written as stored.
                    body = bytes(row["body"])
                    out.write(body[:-1] + b',"entry_hash":"' + row["entry_hash"].encode() + b'"}\n')
        finally:
            if output:
                out.close()
            await conn.close()

    asyncio.run(run())


@cli.command()
def demo(
    members: Annotated[int, typer.Option(min=10, max=100_000, help="members to register")] = 300,
    days: Annotated[int, typer.Option(min=1, max=366, help="days of past service")] = 30,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> None:
    """Seed a book `demo` with a district: a social-work station, communities, volunteer
    organisations, needs, projects, members and a month of approved service, all through the
    HTTP API in-process. Shows what it would write first and asks (or needs --yes). A book
    already there is reported, not seeded again. Prints a JSON summary."""
    from app.ops.demo.plan import DemoError
    from app.ops.demo.preview import demo_preview
    from app.ops.demo.seeder import Advance, seed_demo

    settings = get_settings()
    urls = _database(settings)
    settings = settings.model_copy(update={"database_url": urls.app})
    preview = asyncio.run(demo_preview(urls.app, members, days))
    for line in preview.lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    question = f"seed book demo with {members} members and {days} days of service?"
    confirm_write(console, question, yes=yes, dry_run=dry_run, anything=preview.writes)
    if dry_run:
        print(json.dumps(preview.document(), ensure_ascii=False, indent=2))
        return
    # Here the seeding was confirmed, or the book is there and the run only reports it.
    with _progress(TimeElapsedColumn(), transient=True) as progress:

        def phase(name: str, total: int) -> Advance:
            task = progress.add_task(name, total=total)
            return lambda n: progress.advance(task, n)

        try:
            summary = asyncio.run(seed_demo(settings, members, days, phase))
        except DemoError as exc:
            console.print(f"demo refused: {exc}")
            raise typer.Exit(1) from None
    print(json.dumps(summary.document(), default=str, ensure_ascii=False, indent=2))


@cli.command()
def expire(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="the day (YYYY-MM-DD) to expire as of; default today (service zone)"
        ),
    ] = None,
    allow_future: Annotated[
        bool, typer.Option("--allow-future", help="accept an --as-of day after today")
    ] = False,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> None:
    """Post `expiry` transactions for the units that lapsed on or before a day; running it
    again posts nothing new. Shows the plan first and asks (or needs --yes); prints a JSON
    summary."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from app.exchange.expiry.service import expire_lapsed
    from app.kit.clock import utc_now
    from app.runtime import Runtime

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    zone = ZoneInfo(settings.service_timezone)
    today = utc_now().astimezone(zone).date()
    try:
        day = today if as_of is None else date.fromisoformat(as_of)
    except ValueError:
        console.print(f"--as-of must be a date, YYYY-MM-DD (not {as_of!r})")
        raise typer.Exit(2) from None
    if day > today and not allow_future:
        # A mistyped year expires units that have not lapsed: undoing it is a reversal each.
        console.print(
            f"--as-of {day.isoformat()} is after today ({today.isoformat()}, {zone.key}): it "
            "would expire units that have not lapsed yet; pass --allow-future if you mean it",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    urls = _database(settings)

    async def run(dry: bool) -> ExpirySummary:
        runtime = await Runtime.open(urls.app, settings)
        try:
            with _progress(TimeRemainingColumn(), transient=True) as progress:
                what = "plan" if dry else "expiry"
                task = progress.add_task(f"{what} as of {day.isoformat()}", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                return await expire_lapsed(
                    runtime.sessions, runtime.sequencer, day, zone, advance, dry_run=dry
                )
        finally:
            await runtime.close()

    if yes and not dry_run:
        # Told to post (a cron job): one pass, whose summary says what it posted; a plan
        # first would read every account and derive its lots twice.
        print(json.dumps(asyncio.run(run(False)).as_json(), indent=2))
        return
    plan = asyncio.run(run(True))
    _show_expiry_plan(plan)
    question = f"post {plan.entries_posted} expiry entries as of {day.isoformat()}?"
    anything = plan.entries_posted > 0
    if not confirm_write(console, question, yes=yes, dry_run=dry_run, anything=anything):
        print(json.dumps(plan.as_json(), indent=2))
        return
    print(json.dumps(asyncio.run(run(False)).as_json(), indent=2))


def _show_expiry_plan(plan: ExpirySummary) -> None:
    """What an expiry run would post, on stderr, before it is asked to."""
    console.print(
        f"expiry as of {plan.as_of.isoformat()}: {plan.entries_posted} entries would be "
        f"posted, from {plan.accounts_examined} accounts examined",
        highlight=False,
        soft_wrap=True,
    )
    for book, units in plan.units_expired_by_book.items():
        each = ", ".join(f"{n} {asset}" for asset, n in units.items())
        console.print(f"  book {book}: {each}", highlight=False, markup=False, soft_wrap=True)
    if plan.first_accounts:
        more = "" if len(plan.first_accounts) == plan.entries_posted else ", …"
        console.print(
            f"  accounts: {', '.join(plan.first_accounts)}{more}", highlight=False, soft_wrap=True
        )


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="where to write")] = Path("openapi/openapi.json"),
) -> None:
    """Write the OpenAPI document generated from the app."""
    from app.ops.openapi import openapi_text

    output.write_text(openapi_text())
    console.print(f"wrote {output}")


@credentials_cli.command("create")
def credentials_create(
    role: Annotated[str, typer.Option(help="admin, org, miniprogram, kiosk or auditor")],
    book: Annotated[str | None, typer.Option(help="bind to one book")] = None,
    org: Annotated[
        str | None, typer.Option(help="org and kiosk: the organisation (or kiosk site) id")
    ] = None,
    name: Annotated[str, typer.Option(help="a label for people")] = "",
) -> None:
    """Create a bearer credential; its token is printed once, as the last line."""
    from pydantic import ValidationError

    from app.identity.credentials import ROLES
    from app.identity.grants import grant_credential
    from app.identity.schemas import CredentialCreate, CredentialRead
    from app.kit.problems import TimebankError
    from app.runtime import Runtime

    if role not in ROLES:
        console.print(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    try:
        spec = CredentialCreate.model_validate(
            {"role": role, "book": book, "organisation_id": org, "name": name}
        )
    except ValidationError as exc:
        console.print(f"refused: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    settings = get_settings()
    urls = _database(settings)

    async def run() -> tuple[CredentialRead, str]:
        runtime = await Runtime.open(urls.app, settings)
        try:
            return await grant_credential(runtime.sessions, runtime.sequencer, spec)
        finally:
            await runtime.close()

    try:
        credential, token = asyncio.run(run())
    except TimebankError as exc:
        console.print(f"refused: {exc.detail}")
        raise typer.Exit(1) from None
    where = f"book={credential.book or '*'}"
    if credential.organisation_id:
        where += f" organisation={credential.organisation_id}"
    console.print(f"credential {credential.id} role={role} {where}")
    console.print("the token is shown once; store it now:")
    print(token)


def main() -> None:
    """Entry point of the `timebank` console script."""
    # Tests only: the fault points of a command they kill between its steps (app/kit/faults.py).
    arm_from_spec(os.environ.get("TIMEBANK_FAULT_POINTS", ""))
    try:
        cli()
    except Exception as exc:
        # A database that cannot be reached is an operator's condition, not a bug: one line,
        # no traceback, a code of its own (3), as `serve` and the API answer it with 503.
        from app.kit.outages import describe, is_outage

        if not is_outage(exc):
            raise
        if structlog.is_configured():  # a command whose stderr is JSON lines (serve, ...)
            log.error("cli.database_unavailable", error=describe(exc), outage=True)
        else:
            print(f"timebank: the database cannot be reached now: {describe(exc)}", file=sys.stderr)
        raise SystemExit(3) from None


if __name__ == "__main__":  # `python -m app.cli`, as serve starts its log follower
    main()
