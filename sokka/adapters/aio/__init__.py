"""Stores for the asyncio runtime: ``AsyncTaskStore``, the async twin of ``TaskStore``.

``store`` (the protocol), ``connect`` (``connect(url)``: the store a URL
names), ``memory`` (``AsyncMemoryStore``), ``sql`` (``AsyncSQLStore``:
SQLite and PostgreSQL) and ``http`` (``AsyncHTTPStore``, the ``http``
extra). Each runs its sync twin's code, so the two cannot drift; the
contract suite runs unchanged over both (``tests/adapters``).
"""
