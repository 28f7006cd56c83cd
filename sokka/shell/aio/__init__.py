"""The asyncio runtime: ``Worker`` and ``Supervisor`` on one event loop, driving
the same two pure cores as the threaded runtime. The public names are
re-exported by ``sokka.asyncio``."""
