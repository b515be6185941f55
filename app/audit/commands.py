"""`timebank keys ...` and `timebank audit ...` (wired into app/cli.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.audit.export_lines import lines_before, split_export, strict_json
from app.audit.offline import (
    ExportReport,
    VerifyError,
    checkpoint_text,
    verify_export,
    verify_receipt,
)
from app.audit.witness_policy import PolicyError, QuorumVerdict, WitnessPolicy, parse_policy
from app.config import get_settings
from app.kit import deep_json
from app.kit.confirm import DryRunOption, YesOption, confirm_write
from app.logging import configure_logging

keys_cli = typer.Typer(help="Signing keys of receipts and checkpoints.", no_args_is_help=True)
audit_cli = typer.Typer(help="Offline checks of exports and receipts.", no_args_is_help=True)
console = Console(stderr=True)
PROGRESS_REDRAW_S = 0.1
PLAN_BOOKS = 20  # books a rotation's plan names before "…"


@keys_cli.command("rotate")
def rotate(yes: YesOption = False, dry_run: DryRunOption = False) -> None:
    """Make a new signing key (valid after the rotation lead) and record it in every book;
    shows the books first and asks (or needs --yes)."""
    from app import migrate as migrations
    from app.audit.passphrase import signing_key_passphrase
    from app.audit.rotation import Announced, RotationPlan, rotate_and_announce, rotation_plan
    from app.db import resolve_database
    from app.kit.pg_pool import connect
    from app.kit.problems import TimebankError
    from app.runtime import Runtime

    settings = get_settings()
    # The rotation is also a log line (JSON on stderr), for the operations log.
    configure_logging(settings.log_level, settings.log_json)
    urls = resolve_database(settings)
    asyncio.run(migrations.upgrade(urls.owner, settings.app_role))
    passphrase = signing_key_passphrase(settings)

    async def planned() -> RotationPlan:
        conn = await connect(urls.app)
        try:
            return await rotation_plan(conn)
        finally:
            await conn.close()

    plan = asyncio.run(planned())
    shown = ", ".join(plan.books[:PLAN_BOOKS]) + (", …" if len(plan.books) > PLAN_BOOKS else "")
    console.print(
        f"would make a new signing key (replacing {plan.latest_kid or 'none'}) and post "
        f"notice.key_rotated in {len(plan.books)} book(s): {shown or '-'}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if not confirm_write(console, "rotate the signing key?", yes=yes, dry_run=dry_run):
        return

    async def run() -> Announced:
        runtime = await Runtime.open(urls.app, settings)
        conn = await connect(urls.app)
        try:
            return await rotate_and_announce(
                conn, runtime.sequencer, passphrase, settings.signing_key_rotation_lead_s
            )
        finally:
            await conn.close()
            await runtime.close()

    try:
        done = asyncio.run(run())
    except TimebankError as exc:
        console.print(f"refused: {exc.detail}")
        raise typer.Exit(1) from None
    key = done.rotation.key
    since = datetime.fromtimestamp(key.valid_from, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    console.print(f"key {key.kid} signs from {since}; previous {done.rotation.previous_kid}")
    console.print(f"notice.key_rotated in {len(done.books)} book(s)")
    print(key.kid)


@keys_cli.command("list")
def list_keys() -> None:
    """Every signing key with its validity period, one per line."""
    from app.audit.keystore import StoredKey, load_keys
    from app.db import resolve_database
    from app.kit.pg_pool import connect

    urls = resolve_database(get_settings())

    async def run() -> list[StoredKey]:
        conn = await connect(urls.app)
        try:
            return (await load_keys(conn))[0]
        finally:
            await conn.close()

    print("kid valid_from valid_until")
    for key in asyncio.run(run()):
        jwk = key.published().jwk()
        print(key.kid, jwk["valid_from"], jwk.get("valid_until", "-"))


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        console.print(f"error: cannot read {path}: {exc}")
        raise typer.Exit(2) from None


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        document = strict_json(_read_text(path))
    except ValueError as exc:
        console.print(f"error: {path} is not a JWK Set: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(document, dict):
        console.print(f"error: {path} is not a JWK Set")
        raise typer.Exit(2)
    return document


def _policy(path: Path | None) -> WitnessPolicy | None:
    if path is None:
        return None
    try:
        return parse_policy(path.read_bytes())
    except OSError as exc:
        console.print(f"error: cannot read {path}: {exc}")
        raise typer.Exit(2) from None
    except PolicyError as exc:
        message = f"error: {path} is not a witness policy (C2SP tlog-policy): {exc}"
        console.print(message, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _witnesses(out: Console, verdict: QuorumVerdict) -> None:
    def when(timestamp: int) -> str:
        try:
            return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, ValueError, OSError):  # up to 2^63 - 1: no calendar date
            return f"time {timestamp}"

    who = ", ".join(f"{c.witness} ({c.key_name}, {when(c.timestamp)})" for c in verdict.cosigned)
    # Names are the policy's own text: no markup, no highlighting, and one line each.
    plain: dict[str, Any] = {"highlight": False, "markup": False, "soft_wrap": True}
    out.print(f"witnesses: cosigned by {who or 'none of the policy'}", **plain)
    out.print(f"witness policy met: {verdict.needs}", **plain)


def _report(report: ExportReport, jwks_path: Path | None) -> None:
    out = Console()
    count = report.to_seq - report.from_seq + 1
    checked = "receipts, " if report.receipts else ""
    out.print(
        f"OK: book {report.book}: seq {report.from_seq}..{report.to_seq} ({count} entries) "
        f"verified: hashes, chain, {checked}Merkle root"
    )
    out.print(f"head: seq {report.to_seq} {report.head}")
    out.print(f"root at {report.to_seq}: {report.root.hex()}")
    cp = report.checkpoint
    out.print(f"in checkpoint {cp.origin} size {cp.size} root {cp.root_hash.hex()}")
    if report.receipts:
        out.print(f"receipts: {report.receipts}, keys {', '.join(sorted(report.kids))}")
    elif count:
        out.print("receipts: none in the export (the checkpoint commits to every entry)")
    if report.keys_from_export:
        out.print("keys: taken from the export itself; pass --jwks FILE from a trusted source")
    else:
        out.print(f"keys: {jwks_path}")
    if report.trusted_size is not None:
        out.print(f"trusted checkpoint of size {report.trusted_size}: consistent")
    if report.witnesses is not None:
        _witnesses(out, report.witnesses)
    if report.totals is not None:
        out.print(f"accounts: {report.accounts}, open holds: {report.open_holds}")
        for asset, (posted, pending) in sorted(report.totals.items()):
            out.print(f"asset {asset}: posted total {posted}, pending total {pending}")
    else:
        out.print("balances: not checked (the export does not start at seq 1)")


@audit_cli.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="an export: GET /v1/books/{code}/export")],
    jwks: Annotated[
        Path | None, typer.Option(help="trusted JWK Set (default: the export's own)")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="a signed checkpoint obtained independently")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="processes checking receipts (default: the CPUs)")
    ] = None,
    witness_policy: Annotated[
        Path | None,
        typer.Option(help="a C2SP tlog-policy file: the checkpoint must meet its quorum"),
    ] = None,
) -> None:
    """Check an export offline: every hash, the chain, every receipt it carries, the
    journal's rules (from seq 1), the Merkle root and the checkpoint's signature (and its
    witnesses' cosignatures, with --witness-policy). Exits 1 naming the first bad seq."""
    keys = _jwks(jwks)
    policy = _policy(witness_policy)
    trusted = None
    if checkpoint is not None:
        try:
            trusted = checkpoint_text(_read_text(checkpoint))
        except ValueError as exc:
            console.print(f"error: {checkpoint}: {exc}")
            raise typer.Exit(2) from None
    try:
        trailer, start = split_export(file)
    except OSError as exc:
        console.print(f"error: cannot read {file}: {exc}")
        raise typer.Exit(2) from None
    try:
        bounds = deep_json.loads(trailer)
        total = max(0, int(bounds["to_seq"]) - int(bounds["from_seq"]) + 1)
    except (ValueError, KeyError, TypeError):
        total = 0
    from app.kit.heap import settle_heap  # (here: the other commands do not need it)

    # What is alive now lives until the end; the verifier's state only grows (no cycles to
    # find), and the collector's passes over it cost about a tenth of the time.
    settle_heap()
    try:
        # No refresh thread: the bar is redrawn as lines are checked, and the processes that
        # check receipts are forked from a process with one thread.
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
        ) as progress:
            task = progress.add_task("export", total=total)
            drawn = time.monotonic()

            def advance(count: int) -> None:
                nonlocal drawn
                progress.advance(task, count)
                if time.monotonic() - drawn >= PROGRESS_REDRAW_S:
                    progress.refresh()
                    drawn = time.monotonic()

            report = verify_export(
                lines_before(file, start),
                trailer,
                keys,
                trusted,
                advance,
                jobs or usable_cpus(),
                policy,
            )
            progress.update(task, completed=total)
            progress.refresh()
    except VerifyError as error:
        print(str(error), file=sys.stderr)
        raise typer.Exit(1) from None
    _report(report, jwks)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@audit_cli.command("verify-receipt")
def verify_receipt_command(
    receipt: Annotated[str, typer.Argument(help="the JWS, or a file holding it (or its JSON)")],
    jwks: Annotated[Path, typer.Option(help="the JWK Set: GET /.well-known/jwks.json")],
    proof: Annotated[
        Path | None, typer.Option(help="a tlog-proof bundle, or an inclusion proof (JSON)")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="a signed checkpoint")] = None,
    witness_policy: Annotated[
        Path | None,
        typer.Option(help="a C2SP tlog-policy file: the proof's checkpoint must meet its quorum"),
    ] = None,
) -> None:
    """Check one receipt; with --proof (and --checkpoint), also that its entry is in the log
    (and, with --witness-policy, that the checkpoint's witnesses meet the policy)."""
    policy = _policy(witness_policy)
    token = receipt
    try:
        if Path(receipt).is_file():
            token = _read_text(Path(receipt)).strip()
    except OSError:  # a JWS is longer than a file name may be
        pass
    if token.startswith("{"):
        try:
            document = strict_json(token)
        except ValueError as exc:
            console.print(f"error: the receipt's JSON is not valid: {exc}")
            raise typer.Exit(2) from None
        found = document.get("receipt") if isinstance(document, dict) else None
        token = found if isinstance(found, str) else ""
    keys = _jwks(jwks) or {}
    try:
        note = None if checkpoint is None else checkpoint_text(_read_text(checkpoint))
        bundle = None if proof is None else _read_text(proof)
        report = verify_receipt(token, keys, bundle, note, policy)
    except (VerifyError, ValueError) as error:
        print(str(error), file=sys.stderr)
        raise typer.Exit(1) from None
    claims = report.claims
    out = Console()
    out.print(
        f"OK: receipt of book {claims['book']} seq {claims['seq']} tx {claims['tx_id']} "
        f"({claims['kind']}, posted {claims['posted_at']})"
    )
    out.print(f"entry_hash {claims['entry_hash']}")
    if report.checkpoint is not None:
        cp = report.checkpoint
        out.print(f"included in checkpoint {cp.origin} size {cp.size}")
    if report.witnesses is not None:
        _witnesses(out, report.witnesses)
