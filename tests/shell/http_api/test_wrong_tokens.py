"""The HTTP API: 1b. wrong tokens are limited per client address, on the API and
the dashboard's login together; the window is stepped on a ManualClock.

A real server on 127.0.0.1; the clients connect from different loopback
addresses (127.0.0.2, 127.0.0.3: all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from sokka.adapters.memory import MemoryStore
from sokka.shell.clock import ManualClock
from sokka.shell.http import create_app, serve_in_background
from sokka.shell.tokens import MAX_WRONG_TOKENS, WRONG_TOKEN_WINDOW_MS, WrongTokens
from tests.shell.http_api.helpers import AUTH, JSON_BODY, TOKEN, assert_problem

WRONG = {**JSON_BODY, "Authorization": f"Bearer {'w' * len(TOKEN)}"}
RIGHT = {**JSON_BODY, **AUTH}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=1_000_000)


GUESSER, NEIGHBOUR = "127.0.0.2", "127.0.0.3"


@pytest.fixture
def server(clock: ManualClock) -> Iterator[str]:
    with serve_in_background(create_app(MemoryStore(), token=TOKEN, clock=clock)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[Callable[[str], httpx.Client]]:
    """``client(address)``: a client of ``server`` connecting from ``address``."""
    opened: list[httpx.Client] = []

    def open_from(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        made = httpx.Client(base_url=server, transport=transport, timeout=10.0)
        opened.append(made)
        return made

    yield open_from
    for made in opened:
        made.close()


def count(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/v1/count_tasks", content=b"{}", headers=headers)


def test_the_sixth_wrong_token_is_refused_with_429_even_with_the_right_one_until_the_window_ends(
    client: Callable[[str], httpx.Client], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    guesser = client(GUESSER)
    caplog.set_level(logging.INFO, "sokka.http")
    for _ in range(MAX_WRONG_TOKENS):
        assert_problem(count(guesser, WRONG), 401, "unauthorized")
        clock.advance(1_000)
    # Locked out: the right token is refused too, and nothing tells a hit from a miss.
    for headers in (RIGHT, WRONG, RIGHT):
        refused = count(guesser, headers)
        problem = assert_problem(refused, 429, "too-many-wrong-tokens")
        # The first wrong token was 5 s ago: 55 s are left of its window.
        assert refused.headers["retry-after"] == "55"
        assert "55 s" in problem["detail"]
        assert TOKEN not in refused.text
    clock.advance(30_000)
    assert count(guesser, RIGHT).headers["retry-after"] == "25"
    # /health never needs a token, and stays open.
    assert guesser.get("/health").status_code == 200
    # Logged once, at the lockout, naming the address (never per refused request).
    lockouts = [r for r in caplog.records if "wrong tokens from" in r.getMessage()]
    assert len(lockouts) == 1
    assert lockouts[0].levelno == logging.WARNING
    assert GUESSER in lockouts[0].getMessage()
    # The window passes for the first wrong token: one more try is allowed.
    clock.advance(25_000)
    assert count(guesser, RIGHT).status_code == 200
    assert_problem(count(guesser, WRONG), 401, "unauthorized")
    assert_problem(count(guesser, RIGHT), 429, "too-many-wrong-tokens")
    assert len([r for r in caplog.records if "wrong tokens from" in r.getMessage()]) == 2


def test_another_address_is_unaffected_and_a_right_token_resets_no_count(
    client: Callable[[str], httpx.Client], clock: ManualClock
) -> None:
    guesser, neighbour = client(GUESSER), client(NEIGHBOUR)
    for _ in range(MAX_WRONG_TOKENS - 1):
        assert_problem(count(guesser, WRONG), 401, "unauthorized")
    # Others' right tokens, and the guesser's own, forget none of its wrong ones.
    assert count(neighbour, RIGHT).status_code == 200
    assert count(guesser, RIGHT).status_code == 200
    assert_problem(count(guesser, WRONG), 401, "unauthorized")
    assert_problem(count(guesser, RIGHT), 429, "too-many-wrong-tokens")
    assert count(neighbour, RIGHT).status_code == 200
    # A missing token or another scheme guesses nothing: it is not counted.
    for _ in range(2 * MAX_WRONG_TOKENS):
        assert_problem(count(neighbour, JSON_BODY), 401, "unauthorized")
    assert count(neighbour, RIGHT).status_code == 200


def _login_form(ui: httpx.Client) -> dict[str, str]:
    page = ui.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return {"csrf": csrf.group(1), "next": "/ui/"}


def test_the_dashboard_login_and_the_api_share_one_count_per_address(
    client: Callable[[str], httpx.Client], clock: ManualClock
) -> None:
    ui = client(GUESSER)
    form = _login_form(ui)
    for _ in range(MAX_WRONG_TOKENS - 2):
        refused = ui.post("/ui/login", data={**form, "token": "not-the-token-at-all"})
        assert refused.status_code == 401
        assert "Wrong token." in refused.text
    assert_problem(count(ui, WRONG), 401, "unauthorized")
    assert ui.post("/ui/login", data={**form, "token": "still-not-the-token"}).status_code == 401
    # Locked out on both doors, the right token included.
    locked = ui.post("/ui/login", data={**form, "token": TOKEN})
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "60"
    assert "Too many wrong tokens from your address: try again in 60 s." in locked.text
    assert "set-cookie" not in locked.headers  # no session for a refused login
    assert_problem(count(ui, RIGHT), 429, "too-many-wrong-tokens")
    # Another address signs in meanwhile.
    other = client(NEIGHBOUR)
    signed_in = other.post("/ui/login", data={**_login_form(other), "token": TOKEN})
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/ui/")
    clock.advance(WRONG_TOKEN_WINDOW_MS)
    opened = ui.post("/ui/login", data={**form, "token": TOKEN})
    assert (opened.status_code, opened.headers["location"]) == (303, "/ui/")


def test_the_table_of_addresses_stays_bounded_and_forgets_the_oldest_first() -> None:
    seen = WrongTokens(limit=2, window_ms=60_000, max_addresses=100)
    for i in range(10_000):
        seen.wrong(f"10.0.{i // 256}.{i % 256}", i)
        assert len(seen) <= 100
    # The newest 100 addresses are remembered; the oldest were forgotten first.
    assert len(seen) == 100
    seen.wrong("10.0.39.15", 10_000)  # the last one seen: its second wrong token
    assert seen.refusal_ms("10.0.39.15", 10_001) == 9_999 + 60_000 - 10_001
    assert seen.refusal_ms("10.0.0.0", 10_001) is None
    # A window after its first wrong token, it may try again (one is left) ...
    assert seen.refusal_ms("10.0.39.15", 9_999 + 60_000) is None
    assert len(seen) == 100
    # ... and once all its wrong tokens are a window old, it leaves the table when seen.
    assert seen.refusal_ms("10.0.39.15", 10_000 + 60_000) is None
    assert len(seen) == 99


@pytest.mark.parametrize("field", ["limit", "window_ms", "max_addresses"])
def test_a_limiter_without_a_positive_bound_is_refused_naming_the_field(field: str) -> None:
    from sokka.core.errors import ValidationError

    with pytest.raises(ValidationError) as refused:
        WrongTokens(**{field: 0})  # type: ignore[arg-type]
    assert refused.value.field == field

