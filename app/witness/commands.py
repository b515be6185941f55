"""`timebank witness ...`: make a witness's directory, add the logs it witnesses, show it,
serve it (wired into app/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from app.audit.note import is_valid_key_name
from app.witness.config import (
    WitnessConfig,
    WitnessConfigError,
    WitnessDir,
    create_key,
    load_config,
    load_key,
    log_verifier,
    save_config,
)

witness_cli = typer.Typer(
    help="A witness of other parties' logs (C2SP tlog-witness).", no_args_is_help=True
)
DirOption = Annotated[Path, typer.Option("--dir", help="the witness's directory")]


def _fail(message: str) -> NoReturn:
    print(f"timebank witness: {message}", file=sys.stderr)
    raise typer.Exit(2)


@witness_cli.command("init")
def init(
    directory: DirOption,
    name: Annotated[str, typer.Option(help="the witness's name (its key name)")],
) -> None:
    """Make the directory, the witness's key (witness.key, 0600) and witness.json; prints the
    witness's verifier key."""
    files = WitnessDir(directory)
    if files.config_path.exists() or files.key_path.exists():
        _fail(f"{directory} holds a witness already")
    if not is_valid_key_name(name):
        _fail(f"invalid name {name!r}: a key name is not empty and has no spaces and no '+'")
    config = WitnessConfig(name=name)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        cosigner = create_key(files, name)
    except WitnessConfigError as exc:
        _fail(str(exc))
    save_config(files, config)
    print(cosigner.vkey())


@witness_cli.command("add-log")
def add_log(
    directory: DirOption,
    origin: Annotated[str, typer.Option(help="the log's origin line")],
    vkey: Annotated[list[str], typer.Option(help="a verifier key of the log (repeatable)")],
) -> None:
    """Witness the log `origin` signed by these keys (added to its keys if it is listed)."""
    files = WitnessDir(directory)
    try:
        config = load_config(files)
        for value in vkey:
            log_verifier(origin, value)
    except (WitnessConfigError, ValueError) as exc:
        _fail(str(exc))
    logs = [log.model_dump() for log in config.logs]
    entry = next((log for log in logs if log["origin"] == origin), None)
    if entry is None:
        logs.append({"origin": origin, "vkeys": []})
        entry = logs[-1]
    entry["vkeys"].extend(v.strip() for v in vkey if v.strip() not in entry["vkeys"])
    try:
        updated = WitnessConfig.model_validate({**config.model_dump(), "logs": logs})
    except ValueError as exc:
        _fail(str(exc))
    save_config(files, updated)
    print(f"{origin}: {len(entry['vkeys'])} key(s)")


@witness_cli.command("show")
def show(directory: DirOption) -> None:
    """The witness's name, verifier key, address, and each log with its latest cosigned size."""
    from app.witness.store import WitnessStore

    files = WitnessDir(directory)
    try:
        config = load_config(files)
        key = load_key(files, config.name)
    except WitnessConfigError as exc:
        _fail(str(exc))
    sizes = WitnessStore(files.db_path).latest_sizes()
    print(f"name    {config.name}")
    print(f"vkey    {key.cosigner.vkey()}")
    print(f"listen  {config.listen.host}:{config.listen.port}")
    for log in config.logs:
        size = sizes.get(log.origin)
        print(f"log     {log.origin}  latest cosigned size: {'none' if size is None else size}")
        for value in log.vkeys:
            print(f"  vkey  {value}")


@witness_cli.command("serve")
def serve(
    directory: DirOption,
    host: Annotated[
        str | None, typer.Option(help="address to bind (default: witness.json)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to bind (default: witness.json)")] = None,
) -> None:
    """Serve the witness (one process) until interrupted."""
    import uvicorn

    from app.logging import configure_logging, logging_config
    from app.witness.app import create_app

    configure_logging()
    try:
        app = create_app(directory)
    except WitnessConfigError as exc:
        _fail(str(exc))
    listen = app.state.witness.config.listen
    uvicorn.run(
        app,
        host=host or listen.host,
        port=port or listen.port,
        log_config=logging_config(),
        server_header=False,
    )
