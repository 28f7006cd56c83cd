"""A private, throw-away PostgreSQL server for tests that stop and start it.

Fault tests must never touch a shared server: ``private_postgres()`` runs
``initdb`` in a temporary directory, starts a server on a free port of
127.0.0.1 (its unix socket in that directory too), and on exit stops it and
removes the directory. PostgreSQL refuses to run as root, so under root the
binaries run as the ``postgres`` OS user (``runuser -u postgres --``).

The binaries are looked up in ``SOKKA_PG_BIN``, then ``/usr/lib/postgresql/*/bin``
(newest first), then ``PATH``. When they, or the ``postgres`` user under
root, are missing, the test is skipped with the reason, unless
``SOKKA_REQUIRE_POSTGRES=1``, which turns the skip into a failure (as in
``tests/databases.py``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

_START_TRIES = 3


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SOKKA_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (SOKKA_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def _find_bin_dir() -> Path | None:
    candidates: list[str] = []
    if os.environ.get("SOKKA_PG_BIN"):
        candidates.append(os.environ["SOKKA_PG_BIN"])
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        path = Path(candidate)
        if all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One private server; ``stop(mode)`` and ``start()`` may be called any number of times."""

    def __init__(self, bin_dir: Path, root: Path, run_as: pwd.struct_passwd | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sock"
        self.log = root / "server.log"
        self.port = 0
        self._run_as = run_as

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as.pw_name, "--", *command]
        return subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def init(self) -> None:
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")

    def configure(self, port: int) -> None:
        self.port = port
        # The settings live in postgresql.auto.conf, so every later start uses them.
        # fsync=off is safe for these tests: the machine does not crash, only the
        # server; synchronous_commit stays on, so an acknowledged commit survives
        # even ``pg_ctl stop -m immediate``.
        settings = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockets}'",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "'16MB'",
        }
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        auto = self.data / "postgresql.auto.conf"
        auto.write_text(text)
        self._chown(auto)

    def start(self) -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                         "start")  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n{self.log_tail()}"
            )

    def stop(self, mode: str = "fast") -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed: {done.stderr.strip()}")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def make_dirs(self) -> None:
        self.sockets.mkdir()
        self._chown(self.root)
        self._chown(self.sockets)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running private server; stopped (immediately if need be) and deleted on exit."""
    bin_dir = _find_bin_dir()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
            "(set SOKKA_PG_BIN to their directory)"
        )
    run_as: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' OS user to run PostgreSQL")
        if shutil.which("runuser") is None:
            _unavailable("running as root and `runuser` is missing (needed to run PostgreSQL)")
    root = Path(tempfile.mkdtemp(prefix="sokka-pg-"))
    server = PrivatePostgres(bin_dir, root, run_as)
    try:
        server.make_dirs()
        try:
            server.init()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            _unavailable(f"cannot create a private PostgreSQL cluster: {error}")
        failure = ""
        for _ in range(_START_TRIES):  # the free port may be taken before the server binds it
            server.configure(free_port())
            try:
                server.start()
                break
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                failure = str(error)
        else:
            _unavailable(f"cannot start a private PostgreSQL server: {failure}")
        yield server
    finally:
        _teardown(server)


def _teardown(server: PrivatePostgres) -> None:
    if server.data.exists():
        try:
            server.stop("fast")
        except (RuntimeError, subprocess.TimeoutExpired):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop("immediate")
    shutil.rmtree(server.root, ignore_errors=True)
