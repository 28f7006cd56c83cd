"""A worker and a supervisor in one process, until SIGTERM or Ctrl-C.

    python -m examples.run_worker

This is what ``sokka worker --topic emails --handler examples.emails:send_welcome
--supervise`` does, written out.
"""

from __future__ import annotations

import logging
import os

from examples.emails import send_welcome
from sokka import LeasePolicy, Supervisor
from sokka.adapters.sql import SQLStore
from sokka.shell.worker import Worker

LEASE_MS = 30_000  # the worker's and the supervisor's lease must be the same

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
store = SQLStore(os.environ.get("SOKKA_DB", "sqlite:///sokka.db"))
supervisor = Supervisor(
    store, "emails", LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=LEASE_MS)
)
worker = Worker(
    store, "emails", send_welcome, concurrency=4, lease_time_ms=LEASE_MS, grace_ms=10_000
)
supervisor.start()
try:
    stats = worker.run()  # blocks until SIGTERM or SIGINT, then drains
finally:
    supervisor.stop()
    store.close()
print(stats)
