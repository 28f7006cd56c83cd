"""RepeatedErrors: a failure that repeats is logged once, then in summaries."""

from __future__ import annotations

import logging

import pytest

from sokka.shell.clock import ManualClock
from sokka.shell.errorlog import RepeatedErrors

log = logging.getLogger("sokka.test.errorlog")


class Lines:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __call__(self) -> list[str]:
        return self._caplog.messages  # a new list on every read


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Lines:
    caplog.set_level(logging.INFO, logger=log.name)
    return Lines(caplog)


def test_a_failure_that_repeats_is_logged_once_then_summarised(lines) -> None:
    clock = ManualClock()
    errors = RepeatedErrors(log, "worker w1", clock, every_ms=30_000)
    for _ in range(100):  # 100 tries in 10 s
        errors.failed("reserve", ConnectionError("refused"))
        clock.advance(100)
    assert lines() == ["worker w1: reserve failed, will retry: refused"]
    clock.advance(20_000)
    errors.failed("reserve", ConnectionError("refused again"))
    assert lines()[1:] == [
        "worker w1: reserve has failed 100 more times (30 s since it last worked), "
        "still retrying; the last error: refused again"
    ]


def test_an_error_of_another_kind_is_logged_at_once(lines) -> None:
    errors = RepeatedErrors(log, "supervisor", ManualClock())
    errors.failed("listing", ConnectionError("refused"))
    errors.failed("listing", ConnectionError("refused"))
    errors.failed("listing", TimeoutError("slow"))
    assert len(lines()) == 2
    assert lines()[1].endswith("the last error: slow")


def test_recovery_is_logged_and_the_next_failure_is_new(lines) -> None:
    clock = ManualClock()
    errors = RepeatedErrors(log, "w", clock)
    errors.failed("keepalive", ConnectionError("down"))
    clock.advance(1_500)
    errors.failed("keepalive", ConnectionError("down"))
    errors.succeeded("keepalive")
    errors.succeeded("keepalive")  # nothing to say twice
    errors.failed("keepalive", ConnectionError("down"))
    assert lines() == [
        "w: keepalive failed, will retry: down",
        "w: keepalive works again, after 2 failures over 1.5 s",
        "w: keepalive failed, will retry: down",
    ]
    assert errors.streak("keepalive") == 1


def test_calls_are_counted_apart(lines) -> None:
    errors = RepeatedErrors(log, "w", ManualClock())
    errors.failed("reserve", ConnectionError("down"))
    errors.failed("keepalive", ConnectionError("down"))
    assert len(lines()) == 2
    assert (errors.streak("reserve"), errors.streak("keepalive"), errors.streak("x")) == (1, 1, 0)
