"""The table of calls: this suite covers every call, and HTTPStore matches it."""

from __future__ import annotations

import inspect

import pytest

from sokka.adapters.http import HTTPStore
from sokka.adapters.wire import OPERATIONS_BY_NAME
from tests.shell.http_api.helpers import (
    STORE_CALLS,
    seeded_store,
    valid_bodies,
)


def test_this_suite_has_a_valid_body_for_every_operation_and_store_call() -> None:
    assert set(valid_bodies(seeded_store())) == set(OPERATIONS_BY_NAME) == set(STORE_CALLS)


@pytest.mark.parametrize("name", STORE_CALLS)
def test_httpstore_and_the_server_share_one_call_table(name: str) -> None:
    """HTTPStore's method for each call takes exactly the arguments the table gives
    that call's endpoint (and sends nothing else: HTTPStore._call checks)."""

    operation = OPERATIONS_BY_NAME[name]
    method = inspect.signature(getattr(HTTPStore, name))
    client_args = [p for p in method.parameters if p != "self"]
    assert client_args == [param.name for param in operation.params]
