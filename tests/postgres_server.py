"""A real PostgreSQL server for the tests, started from the machine's own binaries.

``initdb`` and ``pg_ctl`` (PostgreSQL 15 as Debian installs it, or whatever
``pg_config --bindir`` names) create a cluster in a fresh temporary directory and
start it on a free TCP port of 127.0.0.1, with ``trust`` authentication and
``fsync=off`` (a test cluster is thrown away; the catalog's own crash safety is
tested by killing the client, which fsync does not affect). One server serves a
whole test session; each test gets a database of its own (:meth:`new_database`).

``initdb`` refuses to run as root. Under root (CI's containers, this machine) the
cluster belongs to the ``postgres`` user when one exists, else to ``nobody``, and
the server binaries run as that user through ``runuser`` (util-linux).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "sonic"


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None if PostgreSQL is absent."""
    candidates = [os.environ.get("SONIC_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(out.stdout.strip())
        except OSError:
            pass
    for where in (os.path.dirname(shutil.which("initdb") or ""), *candidates):
        if where and all((Path(where) / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return Path(where)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@dataclass
class PostgresServer:
    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sonic-pg-")))
    port: int = field(default_factory=_free_port)
    _names: itertools.count = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        user = _server_user()
        if user is not None:
            command = ["runuser", "-u", user.pw_name, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stdout}\n{result.stderr}"
            )
        return result

    def start(self, durable: bool = False) -> PostgresServer:
        """initdb and start; ``durable`` keeps PostgreSQL's default fsync (for benchmarks)."""
        user = _server_user()
        if user is not None:  # the data directory and the socket directory are the user's
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
        options += "-c max_connections=200 -c shared_buffers=128MB"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "catalog") -> str:
        """A fresh, empty database on this server; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
