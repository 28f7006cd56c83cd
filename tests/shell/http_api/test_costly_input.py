"""The HTTP API: 10. costly input. A body built to be expensive to decode gets its
4xx in time linear in its size, and does not hold up the other requests: ``GET
/health`` on the same real server answers within ``HEALTH_BOUND_S`` while it is
being decoded.

The machine running the tests is shared, so the bounds are generous (ten times
what they measure on a quiet one) and a /health measurement is retried; each bound
is still far below what the bodies cost before (seconds to minutes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.memory import MemoryStore
from tests.shell.http_api.helpers import AUTH, JSON_BODY, assert_problem, snapshot

#: The slowest /health answer allowed while a costly body is decoded.
HEALTH_BOUND_S = 0.100
#: Rounds of /health probing; one round within the bound passes (a noisy neighbour
#: can spoil one, a server that holds its event loop spoils every one).
HEALTH_ROUNDS = 3


def _repeated_last_key(keys: int) -> bytes:
    """A get_task body whose ``x`` object holds ``keys`` keys and then the last one
    again: found only by checking every key (the check used to be quadratic)."""
    members = ",".join(f'"k{i}":0' for i in range(keys))
    return f'{{"task_id":"t-starting","x":{{{members},"k{keys - 1}":1}}}}'.encode()


def _timed_post(client: httpx.Client, call: str, raw: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.post(f"/v1/{call}", content=raw, headers={**AUTH, **JSON_BODY})
    return response, time.perf_counter() - started


def _health_while_posting(
    base_url: str, call: str, raw: bytes, check: Callable[[httpx.Response], None]
) -> list[float]:
    """Post ``raw`` again and again on a thread for about a second (each answer passes
    ``check``), probing ``GET /health`` meanwhile; the probes' latencies in seconds.
    The first probe waits until the first body is on its way."""
    sending = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []
    answered = 0

    def send() -> None:
        nonlocal answered
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            while not stop.is_set():
                sending.set()
                try:
                    check(_timed_post(client, call, raw)[0])
                except BaseException as error:  # reported on the test's thread
                    failures.append(error)
                    return
                answered += 1

    sender = threading.Thread(target=send, name="costly-sender", daemon=True)
    latencies: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30.0) as prober:
        assert prober.get("/health").status_code == 200  # the connection is open
        sender.start()
        assert sending.wait(5.0)
        time.sleep(0.02)  # the body is on the wire: the server is busy with it
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline or answered < 2:
            started = time.perf_counter()
            response = prober.get("/health")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            time.sleep(0.01)
            if failures or time.monotonic() > deadline + 60:
                break
    stop.set()
    sender.join()
    assert not failures, failures[0]
    assert answered >= 2, "the costly requests did not answer"
    return latencies


def _assert_health_stays_fast(
    base_url: str, call: str, raw: bytes, check: Callable[[httpx.Response], None]
) -> None:
    rounds = []
    for _ in range(HEALTH_ROUNDS):
        latencies = _health_while_posting(base_url, call, raw, check)
        rounds.append(max(latencies))
        if rounds[-1] <= HEALTH_BOUND_S and len(latencies) >= 5:
            return
    pytest.fail(f"/health took {[round(r * 1000) for r in rounds]} ms at worst (rounds)")


def _malformed(response: httpx.Response) -> None:
    problem = assert_problem(response, 400, "malformed-request")
    assert "appears twice" in problem["rule"]


def test_a_repeated_key_among_40000_answers_400_quickly(
    http: httpx.Client, backing: MemoryStore
) -> None:
    """430 KB, 40,000 keys: 13 s (quadratic) before, about 50 ms now."""
    before = snapshot(backing)
    response, elapsed = _timed_post(http, "get_task", _repeated_last_key(40_000))
    _malformed(response)
    assert "'k39999'" in response.json()["rule"]
    assert elapsed < 1.0
    assert snapshot(backing) == before


def test_a_repeated_key_among_400000_answers_400_in_linear_time(
    http: httpx.Client, backing: MemoryStore
) -> None:
    """Ten times the keys (4.7 MB): about ten times as long, not a hundred."""
    response, elapsed = _timed_post(http, "get_task", _repeated_last_key(400_000))
    _malformed(response)
    assert elapsed < 5.0


def test_health_answers_while_a_body_with_40000_keys_is_decoded(
    server: tuple[Starlette, str], backing: MemoryStore
) -> None:
    _assert_health_stays_fast(server[1], "get_task", _repeated_last_key(40_000), _malformed)


def _many_objects(count: int) -> bytes:
    """A get_task body with ``count`` small objects under an unknown key."""
    return ('{"task_id":"t-starting","x":[' + ",".join(['{"a":0}'] * count) + "]}").encode()


def _unknown_x(response: httpx.Response) -> None:
    problem = assert_problem(response, 422, "invalid-input")
    assert problem["field"] == "x"


def test_health_answers_while_a_large_body_is_parsed(
    server: tuple[Starlette, str], backing: MemoryStore
) -> None:
    """2.4 MB of 300,000 objects: parsed on the event loop, it held every request."""
    _assert_health_stays_fast(server[1], "get_task", _many_objects(300_000), _unknown_x)


def _long_nested_keys() -> bytes:
    """A create_task body (2.2 MB) whose data nests 60 keys of 20,000 characters,
    with 1,600 leaves at every level: each leaf's path (up to 1.2 MB) was built.

    No object is large: json parses one object in one C call that no other thread
    can interrupt, so /health waits for the largest one (see docs/http.md)."""
    leaves = ",".join(f'"l{i}":0' for i in range(1_600))
    data = "{" + leaves + "}"
    for level in range(60):
        data = f'{{{leaves},"{chr(ord("a") + level % 26) * 20_000}":{data}}}'
    return f'{{"spec":{{"topic":"t","data":{data}}}}}'.encode()


def _data_too_large(response: httpx.Response) -> None:
    problem = assert_problem(response, 422, "invalid-input")
    assert problem["field"] == "data"
    assert "at most 262144 bytes" in problem["rule"]


def test_data_of_long_nested_keys_far_over_the_limit_answers_422_quickly(
    http: httpx.Client, backing: MemoryStore
) -> None:
    """2.2 MB: 3.2 s of walking before (32 s for the audit's body), about 0.1 s now:
    the walk stops at the size limit, and builds no path unless it reports an error."""
    before = snapshot(backing)
    response, elapsed = _timed_post(http, "create_task", _long_nested_keys())
    _data_too_large(response)
    assert elapsed < 1.0
    assert snapshot(backing) == before


def test_health_answers_while_data_of_long_nested_keys_is_checked(
    server: tuple[Starlette, str], backing: MemoryStore
) -> None:
    raw = _long_nested_keys()
    _assert_health_stays_fast(server[1], "create_task", raw, _data_too_large)
