"""Private PostgreSQL and Redis servers the fault tests may stop, kill and restart at will.

The shared servers (PostgreSQL 5432, Redis 6390) serve every engineer's tests at
once and are never touched here: each fault test runs against servers of its own
on free loopback ports.

- `PrivatePostgres`: `initdb` into a temporary directory (as the `postgres` OS
  user when running as root: initdb refuses root), trust authentication on
  127.0.0.1, `fsync=off`; `start()`, `stop(mode="fast" | "immediate")`,
  `restart()`, `create_database(name)`, `url(name)`.
- `PrivateRedis`: `redis-server --save '' --appendonly no` as a child process;
  `restart()` kills it and starts a new one on the same port, empty.

`require_binaries()` skips a test when the binaries are missing, or fails it when
INTEGRATIONS_TEST_REQUIRE_SERVERS=1 (as CI sets).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.app import skip_or_fail
from tests.helpers.servers import free_port

PG_BIN = Path(os.environ.get("INTEGRATIONS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_binaries(postgres: bool = True, redis: bool = True) -> None:
    missing = []
    if postgres and not all((PG_BIN / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
        missing.append(f"PostgreSQL 15 binaries in {PG_BIN}")
    if postgres and os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser (initdb refuses to run as root)")
    if redis and not os.path.exists(REDIS_SERVER):
        missing.append("redis-server")
    if not missing:
        return
    skip_or_fail("private servers for the fault tests need " + " and ".join(missing))


def _wait_port(port: int, up: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                reachable = True
        except OSError:
            reachable = False
        if reachable == up:
            return True
        time.sleep(0.05)
    return False


class PrivatePostgres:
    """A throw-away PostgreSQL 15 cluster on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fi-faults-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self.restarts = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            timeout=120,
        )

    def _run(self, command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}\n{done.stderr}")
        return done

    def start(self) -> None:
        options = (
            # fsync=off survives a crash of the server (not of the machine); commits stay synchronous,
            # so an `immediate` stop loses nothing a client saw committed
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        if not _wait_port(self.port, up=True, timeout=30):
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back open transactions and disconnects; `immediate` is a crash."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> float:
        """Stop, stay down `down_for` seconds, start; returns how long the server was unreachable."""
        started = time.monotonic()
        self.stop(mode)
        time.sleep(down_for)
        self.start()
        self.restarts += 1
        return time.monotonic() - started

    def running(self) -> bool:
        return _wait_port(self.port, up=True, timeout=0.1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres") as conn:
            conn.autocommit = True
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server without persistence on a free port: a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
        ]
        self.process = subprocess.Popen(
            [*command, "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if not _wait_port(self.port, up=True, timeout=15):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Kill it (SIGKILL): whatever it held is gone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        _wait_port(self.port, up=False, timeout=5)

    def restart(self, down_for: float = 0.0) -> float:
        started = time.monotonic()
        self.stop()
        time.sleep(down_for)
        self.start()
        self.restarts += 1
        return time.monotonic() - started

    def flush(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        client.flushall()
        client.close()

    def close(self) -> None:
        self.stop()
