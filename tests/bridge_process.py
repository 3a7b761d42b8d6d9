"""Runs the real bridge (`python -m bridge serve`) as a child process on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BridgeProcess:
    """One bridge process; `restart()` keeps its store, `kill()` is SIGKILL of its whole process group."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        command: str = "serve",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.command = command
        self.extra_args = extra_args
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "bridge.yaml"
        self.log_path = workdir / "bridge.log"
        config.setdefault("store", f"sqlite:///{workdir / 'bridge.db'}")
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> BridgeProcess:
        log = self.log_path.open("ab")
        args = [sys.executable, "-m", "bridge", self.command, "--config", str(self.config_path), "--log-level", "DEBUG"]
        if self.command == "serve":
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*args, *self.extra_args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.logs()}")
            if self.command != "serve":
                if "worker" in self.logs() and " started" in self.logs():
                    return self
            else:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"bridge did not start:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash or an OOM kill looks like."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> BridgeProcess:
        self.kill()
        return self.start()

    def settled(self) -> bool:
        """Every stored call parsed and no operation waiting: the worker has nothing left to send."""
        path = self.workdir / "bridge.db"
        if not path.exists():
            return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            received = conn.execute("SELECT COUNT(*) FROM calls WHERE status = 'received'").fetchone()[0]
            pending = conn.execute("SELECT COUNT(*) FROM operations WHERE status = 'pending'").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return False
        finally:
            conn.close()
        return bool(received == 0 and pending == 0)

    def wait_settled(self, timeout: float = 20.0) -> None:
        """Poll until `settled`, so a test can then assert that nothing more was (or will be) sent."""
        deadline = time.monotonic() + timeout
        while not self.settled():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bridge still had work after {timeout} s:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(
        self, endpoint: str, body: bytes, headers: dict[str, str] | None = None, query: str = ""
    ) -> httpx.Response:
        url = f"{self.url}/webhooks/{endpoint}" + (f"?{query}" if query else "")
        return httpx.post(url, content=body, headers=headers or {}, timeout=10)
