"""The asyncio examples run as a user runs them, as real processes: the script
with ``python -m``, the Starlette app under a real uvicorn server on a free port,
stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k != "SOKKA_DB"}  # the memory store


def test_the_asyncio_script_works_every_task_and_ends() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.asyncio_script"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "done: 20 sent, 1 failed, 21 reserved"


def test_the_starlette_app_enqueues_works_in_its_lifespan_and_drains_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.starlette_app:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/emails/none")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.05)
            ids = []
            for n in range(5):
                answer = client.post("/emails", json={"to": f"user{n}@example.com"})
                assert answer.status_code == 202
                ids.append(answer.json()["task_id"])
            bad = client.post("/emails", json={"to": "nobody"})
            assert (bad.status_code, bad.json()) == (422, {"error": "to: must be an email address"})
            assert client.get("/emails/nope").status_code == 404
            while not all(
                client.get(f"/emails/{task_id}").json()["status"] == "terminated" for task_id in ids
            ):
                assert time.monotonic() < deadline, "the tasks were not all worked"
                time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.returncode in (0, -signal.SIGTERM), output
    stopped = [line for line in output.splitlines() if "worker stopped:" in line]
    assert len(stopped) == 1, output
    assert "succeeded=5," in stopped[0]
    assert "Application shutdown complete" in output
