"""HTTPStore: a bearer token sent over plain http:// to another machine is warned
about, once per host (issue 11)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import httpx
import pytest

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.shell.http import create_app, serve_in_background
from tests.shell.http_api.helpers import TOKEN

LOGGER = "sokka.adapters.http"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


def own_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def server_on_the_network() -> Iterator[str]:
    """A server with a token on this machine's network address: ``http://<ip>:<port>``."""
    address = own_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    app = create_app(MemoryStore(), token=TOKEN, listen_host=address)
    with serve_in_background(app, host=address) as base_url:
        yield base_url


def test_a_token_over_plain_http_to_another_host_is_warned_once_naming_it(
    server_on_the_network: str, caplog: pytest.LogCaptureFixture
) -> None:
    host = httpx.URL(server_on_the_network).host
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with HTTPStore(server_on_the_network, token=TOKEN) as store:
            assert store.tasks_in_group("g") == []  # it works: warned, not refused
        with HTTPStore(server_on_the_network, token=TOKEN) as again:
            assert again.tasks_in_group("g") == []
    (warning,) = warnings_of(caplog)  # once, however many stores
    assert f"to {host} over plain http://" in warning
    assert "https://" in warning


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://127.0.0.1:8080", TOKEN),
        ("http://localhost:8080", TOKEN),
        ("http://[::1]:8080", TOKEN),
        ("http://queue.localhost:8080", TOKEN),
        ("https://queue.example.com", TOKEN),
        ("http://no-token.example.com:8080", None),
    ],
    ids=["127.0.0.1", "localhost", "::1", "*.localhost", "https", "no token"],
)
def test_no_warning_where_the_token_stays_on_the_machine_or_is_encrypted_or_absent(
    url: str, token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER), HTTPStore(url, token=token):
        pass
    assert warnings_of(caplog) == []


def test_every_plain_http_host_is_warned_about_on_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for url in ("http://queue-a.internal:8080", "http://queue-b.internal:8080"):
            with HTTPStore(url, token=TOKEN):
                pass
    assert [w.split(" over ")[0] for w in warnings_of(caplog)] == [
        "HTTPStore sends its bearer token to queue-a.internal",
        "HTTPStore sends its bearer token to queue-b.internal",
    ]
