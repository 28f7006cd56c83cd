"""The HTTP comparison's stores and servers: identical stores, in-process and behind HTTP.

With ``http`` in ``--stores``: for each backing store of ``--http-over``
(default: the other stores selected, or all three when only ``http`` is),
every side has its own identical store (pre-loaded with the same terminated
tasks). The server runs in two ways (``--http-server``, default both): on a
thread of this process (``serve_in_background``), where client, event loop
and the store's worker threads share one GIL, so the figure includes that
contention; and in a child process (``python -c`` running uvicorn on a free
port, serving its own store on the same SQLite file or PostgreSQL tables),
with no GIL shared.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Final

from bench.harness import PgServer, child_env, first_line
from bench.stores.common import (
    TOPIC,
    add_through,
    counts_through,
    load_postgres,
    load_sqlite,
    run_tag,
    task_rows,
)
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.core.task import Status

#: Where the HTTP side's server runs: on a thread of this process, or in a child process.
HTTP_MODES: Final = ("thread", "process")
#: The HTTP comparison's sides, as printed.
HTTP_LABELS: Final = {"direct": "in-process", "thread": "HTTP thread", "process": "HTTP child"}
#: HTTP requests per measured call: reserve_tasks, then terminate or finish_many.
HTTP_REQUESTS_PER_CALL: Final = 2

#: The child-process server: ``python -c CHILD_SERVER kind url prefix finished``.
#: It makes its own store (a new MemoryStore, given ``finished`` terminated
#: tasks by ``bench.stores.common.add_through``, as the other sides' are; or a SQLStore
#: on the file or tables this process made and loaded), binds a free loopback
#: port, prints it, and serves the store as ``serve_in_background`` does (same
#: uvicorn settings) until SIGTERM.
CHILD_SERVER: Final = """
import socket, sys
import uvicorn
from sokka.shell.http import create_app
kind, url, prefix, finished = sys.argv[1:5]
if kind == "memory":
    from sokka.adapters.memory import MemoryStore
    from bench.stores.common import TOPIC, add_through
    store = MemoryStore()
    add_through(store, "terminated", TOPIC, int(finished), "child")
else:
    from sokka.adapters.sql import SQLStore
    store = SQLStore(url, prefix=prefix)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(create_app(store), lifespan="off", log_config=None, access_log=False)
uvicorn.Server(config).run(sockets=[sock])
"""


class StoreUnreachable(Exception):
    """The backing store's server does not answer: the comparison is skipped."""


class HttpBackend:
    """One kind of backing store, as identical stores, one per side.

    ``direct``: the store, called in-process. ``thread``: an ``HTTPStore`` on a
    uvicorn server on a thread of this process, fronting its own store.
    ``process``: an ``HTTPStore`` on a uvicorn server in a child process,
    fronting its own store (for SQL: on a file or tables this process made and
    loaded). Everything is undone by ``stack``: servers stopped first, then the
    PostgreSQL tables dropped.
    """

    def __init__(
        self,
        kind: str,
        modes: Sequence[str],
        stack: ExitStack,
        directory: str,
        url: str,
        finished: int,
    ) -> None:
        started = time.perf_counter()
        self.kind = kind
        self.names: tuple[str, ...] = ("direct", *modes)
        self.stack = stack
        self.directory = directory
        self.clients: dict[str, TaskStore] = {}  #: what each side's measured calls call
        self.backing: dict[str, TaskStore] = {}  #: each side's store, when in this process
        self.sql: dict[str, tuple[str, str]] = {}  #: side -> (url, prefix) of its store
        self.tables: dict[str, str] = {}
        self.loaders: dict[str, Any] = {}  #: side -> driver connection on its table
        self.servers: dict[str, str] = {}  #: side -> how its server runs
        self.added = 0  #: tasks each side's store was given on TOPIC
        if kind == "memory":
            self.label = "memory"
            for name in self.names:
                if name != "process":
                    self.backing[name] = MemoryStore()
        elif kind == "sqlite":
            self.label = f"sqlite (files in {directory})"
            for name in self.names:
                path = os.path.join(directory, f"http-{name}.db")
                self._sql_store(name, f"sqlite:///{path}", "h_")
                conn = sqlite3.connect(path, isolation_level=None)
                stack.callback(conn.close)
                self.loaders[name] = conn
        else:
            server = PgServer(url)
            try:
                loader = server.connect()
            except Exception as error:
                raise StoreUnreachable(f"PostgreSQL not reachable: {first_line(error)}") from error
            stack.callback(loader.close)
            self.label = server.label(loader)
            run = run_tag()
            for name in self.names:
                self._sql_store(name, url, f"{run}_h{name[0]}_")
                self.loaders[name] = loader
        self.clients["direct"] = self.backing["direct"]
        if "thread" in self.names:
            from sokka.shell.http import create_app, serve_in_background

            base = stack.enter_context(serve_in_background(create_app(self.backing["thread"])))
            self.clients["thread"] = self._http(base)
            self.servers["thread"] = (
                f"uvicorn on a thread of this process ({base}): the client, the event loop "
                "and the store's worker threads share one GIL"
            )
        # Every store gets ``finished`` terminated tasks on TOPIC (a child's
        # in-memory store makes its own as it starts: faster than over HTTP).
        self.add("terminated", TOPIC, finished)
        self.analyze()
        if "process" in self.names:
            url, prefix = self.sql.get("process", ("", ""))
            self.clients["process"] = self._http(self._child(url, prefix, finished))
        self.setup_s = time.perf_counter() - started

    def _sql_store(self, name: str, url: str, prefix: str) -> None:
        sql_store = SQLStore(url, prefix=prefix)
        self.stack.callback(sql_store.close)
        self.stack.callback(self._drop, sql_store)  # before the close (last in, first out)
        sql_store.drop_schema()
        sql_store.create_schema()
        self.sql[name] = (url, prefix)
        self.tables[name] = f"{prefix}tasks"
        if name != "process":
            self.backing[name] = sql_store

    @staticmethod
    def _drop(sql_store: SQLStore) -> None:
        try:
            sql_store.drop_schema()
        except Exception as error:
            print(f"  (could not drop {sql_store!r}: {error})")

    def _http(self, base_url: str) -> TaskStore:
        from sokka.adapters.http import HTTPStore

        client = HTTPStore(base_url)
        self.stack.callback(client.close)
        return client

    def _child(self, url: str, prefix: str, finished: int) -> str:
        """Start the child-process server; its base URL once it answers /health."""
        import httpx

        log_path = os.path.join(self.directory, f"child-{self.kind}.log")
        log = open(log_path, "wb")  # noqa: SIM115 - closed by the stack
        self.stack.callback(log.close)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_SERVER, self.kind, url, prefix, str(finished)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(),  # bench and sokka, from where this process has them
        )
        self.stack.callback(self._stop, child)
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = child.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()

        def failed(why: str) -> RuntimeError:
            with open(log_path, "rb") as f:
                tail = f.read().decode(errors="replace").strip().splitlines()[-5:]
            return RuntimeError(f"the child HTTP server {why}: " + " | ".join(tail))

        try:
            port = int(lines.get(timeout=60))
        except (queue.Empty, ValueError):
            raise failed("did not start") from None
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise failed("did not answer /health")
            time.sleep(0.02)
        self.servers["process"] = (
            f"uvicorn in a child process (pid {child.pid}, `python -c`, {base}), serving its "
            "own store: no GIL shared with the client"
        )
        return base

    @staticmethod
    def _stop(child: subprocess.Popen[bytes]) -> None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def add(self, status: str, topic: str, count: int) -> None:
        """Give every side's store ``count`` identical tasks in ``status`` (a child's
        in-memory store: once it runs)."""
        if self.kind == "memory":
            for name in self.names:
                if name not in self.clients and name not in self.backing:
                    continue  # the child's store, not started yet: it makes its own
                # Through the store itself where it is here; a child's, over HTTP.
                store = self.backing[name] if name in self.backing else self.clients[name]
                add_through(store, status, topic, count, f"http {self.kind} {name}")
        else:
            rows = task_rows(topic, status, count)
            load = load_sqlite if self.kind == "sqlite" else load_postgres
            for name in self.names:
                load(self.loaders[name], self.tables[name], rows)
        if topic == TOPIC:
            self.added += count

    def analyze(self) -> None:
        if self.kind == "postgres":
            for name in self.names:
                self.loaders[name].execute(f"ANALYZE {self.tables[name]}")

    def counts(self, name: str, unfinished: bool = False, topic: str = TOPIC) -> dict[str, int]:
        """Tasks of ``topic`` by status in ``name``'s store (``unfinished``: only those
        starting or running), read from the store itself: SQL on its table, or its
        own calls (over HTTP for a child's in-memory store)."""
        if self.kind == "memory":
            store = self.backing[name] if name in self.backing else self.clients[name]
            if not unfinished:
                return counts_through(store, topic)
            found: dict[str, int] = {}
            for status in (Status.STARTING, Status.RUNNING):
                found.update(counts_through(store, topic, status))
            return found
        p = "?" if self.kind == "sqlite" else "%s"
        sql = f"SELECT status, count(*) FROM {self.tables[name]} WHERE topic = {p} GROUP BY status"
        rows = self.loaders[name].execute(sql, (topic,)).fetchall()
        found = {status: int(n) for status, n in rows}
        if unfinished:
            return {s: n for s, n in found.items() if s in ("starting", "running")}
        return found
