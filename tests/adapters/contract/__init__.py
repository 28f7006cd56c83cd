"""The ``TaskStore`` contract: every store must pass every test in this package.

The ``store`` fixture (``conftest.py``) runs each test once per store kind.
Tests only use the public protocol (and ``execute``), never a store's
internals, so a new store is put under the contract by adding its factory to
``STORE_FACTORIES``.

A module per section: creating, reading, listing and paging, reserving, extending, owner
outcomes, fencing, revoking and the failure budget, administration, leased
listing, record_ver, bad input (every refusal leaves the store as it was),
regressions, concurrency.
"""

