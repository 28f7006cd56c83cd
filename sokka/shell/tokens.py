"""Bearer tokens: what a token must be, how a request's is checked, and the
limit on wrong ones (``sokka serve``, its dashboard, and the metrics endpoints
of ``sokka worker`` and ``sokka supervise``).

Wrong tokens are counted per client address: after ``limit`` of them within
``window_ms``, that address is refused (429) until the oldest of them is a
window old.

``WrongTokens`` is the rule, with no clock of its own: every method takes
``now_ms``, so a test steps time by hand. ``Throttle`` is the shell around it:
it reads a clock, holds a lock, and logs each lockout once.

Rules (``docs/http.md``, Security: wrong tokens, says the same):

* Only a wrong token counts: a request with no ``Authorization`` header, or
  another scheme, guesses nothing.
* A refused address is refused whatever it sends, the right token included:
  an attacker who has guessed it learns so only once the window has passed.
* A right token resets nothing, neither its own address's count (a client
  that shares an address, behind a NAT or a proxy, with someone guessing
  would otherwise lift the guesser's limit by signing in) nor another's.
* The table is bounded: at most ``max_addresses`` addresses are remembered;
  beyond that, the one whose last wrong token is oldest is forgotten first.
  An address leaves the table as soon as its wrong tokens are all a window
  old, when next seen.
"""

from __future__ import annotations

import hmac
import logging
import string
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from sokka.core.errors import ValidationError
from sokka.shell.clock import Clock, MonotonicClock

__all__ = [
    "MAX_ADDRESSES",
    "MAX_WRONG_TOKENS",
    "MIN_TOKEN_LENGTH",
    "WRONG_TOKEN",
    "WRONG_TOKEN_WINDOW_MS",
    "Throttle",
    "WrongTokens",
    "bearer_refusal",
    "require_token",
]

MIN_TOKEN_LENGTH: Final = 16
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-._~+/=")
#: The one refusal of ``bearer_refusal`` that is a guess (and is counted).
WRONG_TOKEN: Final = "wrong token"

#: Wrong tokens one address may send within ``WRONG_TOKEN_WINDOW_MS``.
MAX_WRONG_TOKENS: Final = 5
WRONG_TOKEN_WINDOW_MS: Final = 60_000
#: Addresses whose wrong tokens are remembered at once (a few hundred bytes each).
MAX_ADDRESSES: Final = 10_000

def require_token(field: str, token: object) -> str:
    """``token``, if it may be a bearer token: at least ``MIN_TOKEN_LENGTH``
    characters of ``A-Z a-z 0-9 - . _ ~ + / =`` (``ValidationError`` naming
    ``field`` otherwise).

    >>> require_token("token", "short")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: token: must be at least 16 characters
    """
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        raise ValidationError(field, f"must be at least {MIN_TOKEN_LENGTH} characters")
    if not set(token) <= _TOKEN_CHARS:
        raise ValidationError(field, "must only hold A-Z a-z 0-9 - . _ ~ + / =")
    return token


def bearer_refusal(given: Sequence[bytes], expected: bytes) -> str | None:
    """Why the ``Authorization`` header values ``given`` do not carry the token
    ``expected`` (None: they do); ``WRONG_TOKEN`` when they carry another one.

    The scheme is case-insensitive (RFC 9110); one header only, since two
    could be read differently by a proxy and by us. The token is compared in
    constant time.

    >>> bearer_refusal([b"bearer s3cret"], b"s3cret"), bearer_refusal([], b"s3cret")
    (None, 'a bearer token is required')
    >>> bearer_refusal([b"Bearer guess"], b"s3cret")
    'wrong token'
    """
    if not given:
        return "a bearer token is required"
    if len(given) > 1:
        return "send one Authorization header"
    scheme, _, credentials = given[0].partition(b" ")
    if scheme.lower() != b"bearer":
        return "the Authorization scheme must be Bearer"
    if not hmac.compare_digest(credentials.strip(b" "), expected):
        return WRONG_TOKEN
    return None


class WrongTokens:
    """The wrong tokens each address sent in the last window: at most ``limit``
    times per address, for at most ``max_addresses`` addresses.

    Deterministic and clock-free: time is the ``now_ms`` each call is given
    (from one monotonic clock).

    >>> seen = WrongTokens(limit=2, window_ms=1_000)
    >>> seen.wrong("10.0.0.7", 0), seen.wrong("10.0.0.7", 100)
    (False, True)
    >>> seen.refusal_ms("10.0.0.7", 500), seen.refusal_ms("10.0.0.8", 500)
    (500, None)
    >>> seen.refusal_ms("10.0.0.7", 1_000)
    """

    def __init__(
        self,
        *,
        limit: int = MAX_WRONG_TOKENS,
        window_ms: int = WRONG_TOKEN_WINDOW_MS,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        for field, value in (("limit", limit), ("window_ms", window_ms),
                             ("max_addresses", max_addresses)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(field, f"must be a positive integer (got {value!r})")
        self.limit = limit
        self.window_ms = window_ms
        self.max_addresses = max_addresses
        # address -> the times of its wrong tokens in the window, oldest first (at
        # most ``limit``); ordered by each address's latest wrong token, oldest first,
        # so that the address to forget is the first one.
        self._times: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    def __len__(self) -> int:
        """The addresses remembered now."""
        return len(self._times)

    def _recent(self, address: str, now_ms: int) -> tuple[int, ...]:
        """The address's wrong tokens within the window before ``now_ms`` (it is
        forgotten when there are none)."""
        times = self._times.get(address)
        if times is None:
            return ()
        recent = tuple(t for t in times if now_ms - t < self.window_ms)
        if not recent:
            del self._times[address]
        elif len(recent) != len(times):
            self._times[address] = recent  # keeps its place in the order
        return recent

    def refusal_ms(self, address: str, now_ms: int) -> int | None:
        """How long ``address`` is still refused, in milliseconds (at least 1), or
        None when it may try a token now."""
        recent = self._recent(address, now_ms)
        if len(recent) < self.limit:
            return None
        return max(1, recent[0] + self.window_ms - now_ms)

    def wrong(self, address: str, now_ms: int) -> bool:
        """Count a wrong token from ``address`` at ``now_ms``; True when this one
        locks the address out (the ``limit``-th within the window), so the caller
        can say so once."""
        recent = (*self._recent(address, now_ms), now_ms)[-self.limit :]
        self._times[address] = recent
        self._times.move_to_end(address)
        while len(self._times) > self.max_addresses:
            self._times.popitem(last=False)
        return len(recent) == self.limit


class Throttle:
    """``WrongTokens`` on a clock, shared by the API's bearer check and the
    dashboard's login (one count per address for both: the token is the same),
    or a metrics endpoint's; lockouts are logged to ``logger``."""

    def __init__(
        self, rule: WrongTokens | None = None, clock: Clock | None = None,
        logger: str = "sokka.http",
    ) -> None:  # fmt: skip
        self.rule = rule if rule is not None else WrongTokens()
        self._clock: Clock = clock or MonotonicClock()
        self._log = logging.getLogger(logger)
        # The event loop is one thread, but an app may be mounted elsewhere.
        self._lock = threading.Lock()

    def retry_after_s(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try a token again (rounded up), or
        None when it may now."""
        with self._lock:
            refusal = self.rule.refusal_ms(address, self._clock.now_ms())
        return None if refusal is None else -(-refusal // 1000)

    def wrong(self, address: str, where: str) -> None:
        """Count a wrong token from ``address`` (at ``where``: the API or the
        dashboard's login), and log the lockout it may cause."""
        with self._lock:
            locked = self.rule.wrong(address, self._clock.now_ms())
        if locked:
            self._log.warning(
                "%d wrong tokens from %s within %d s (the last at %s): refusing its "
                "attempts for up to %d s", self.rule.limit, address,
                self.rule.window_ms // 1000, where, -(-self.rule.window_ms // 1000),
                extra={"client": address},
            )  # fmt: skip
