"""The Host rule: which ``Host`` headers the server answers (421 otherwise).

Rule (the one place it is written; ``docs/http.md`` says the same):

1. The header must be well formed: one ``Host`` header holding a name or IPv4
   address, or an IPv6 address in brackets, each with an optional ``:port``,
   and nothing else (``[::1].evil.example`` is not ``::1``).
2. Loopback names (``localhost``, ``127.0.0.1``, ``::1``) are always
   answered: a page that rebinds its own domain to this address still sends
   its own domain, never one of these.
3. So are the address the server listens on (unless it is every interface,
   ``0.0.0.0`` or ``::``) and every name given with ``--allow-host``.
4. A server with a token answers any well-formed Host (``--allow-host``
   changes nothing there): the token keeps a rebinding page out, and a proxy
   may send any name (nginx sends its upstream's), so a list of names would
   only be one more thing to get wrong.

Why there is a rule at all: without a token, a web page could point its own
domain at 127.0.0.1 (DNS rebinding) and call the server as if it were the
same origin; a Host check refuses it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["LOOPBACK_NAMES", "HostRule", "host_name", "host_rule", "name_of"]

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_EVERY_INTERFACE: Final = frozenset({"0.0.0.0", "::", ""})
#: A DNS name or an IPv4 address (RFC 3986 reg-name without percent-encoding
#: or sub-delimiters, which no host name uses), then an optional port.
_NAME_AND_PORT: Final = re.compile(r"([a-z0-9._~-]+)(?::[0-9]{0,5})?")
_BRACKETED_AND_PORT: Final = re.compile(r"\[([0-9a-f:.]+)\](?::[0-9]{0,5})?")


def host_name(header: str) -> str | None:
    """The host a ``Host`` header names, lower case, without port or brackets; ``None``
    when it is not well formed.

    >>> host_name("LocalHost:8080"), host_name("[::1]:8080"), host_name("queue.example.com")
    ('localhost', '::1', 'queue.example.com')
    >>> [host_name(h) for h in ("[::1].evil.example", "::1", "a b", "", "[::1]x:80")]
    [None, None, None, None, None]
    """
    value = header.strip().lower()
    named = _NAME_AND_PORT.fullmatch(value)
    if named is not None:
        return named.group(1)
    bracketed = _BRACKETED_AND_PORT.fullmatch(value)
    if bracketed is None:
        return None
    try:
        return str(ipaddress.IPv6Address(bracketed.group(1)))
    except ValueError:
        return None


def name_of(allowed: str) -> str:
    """An allowed host as the rule compares it: a name, an IPv4 address, or an IPv6
    address with or without brackets (``ValueError`` for anything else).

    >>> name_of("Queue.Example.com"), name_of("::1"), name_of("[0:0::1]")
    ('queue.example.com', '::1', '::1')
    >>> name_of("queue:8080")
    Traceback (most recent call last):
    ...
    ValueError: 'queue:8080' is not a host name or address (without a port)
    """
    value = allowed.strip().lower()
    if ":" in value and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address (or a name with a port: refused below)
    name = host_name(value)
    if name is None or (value.startswith("[") and not value.endswith("]")):
        raise ValueError(f"{allowed!r} is not a host name or address (without a port)")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRule:
    """Which Host headers are answered: the names in ``names``, or any well-formed
    one when ``any_host``."""

    names: frozenset[str]
    any_host: bool

    def allows(self, headers: Sequence[str]) -> bool:
        """Whether a request with these ``Host`` header values is answered."""
        if len(headers) != 1:
            return False  # none, or two that a proxy and this server could read apart
        name = host_name(headers[0])
        return name is not None and (self.any_host or name in self.names)


def host_rule(*, token: bool, listen: str | None = None, allowed: Sequence[str] = ()) -> HostRule:
    """The rule of this module for a server with (or without) a ``token``, listening
    on ``listen``, given the ``allowed`` names (``ValueError`` on a malformed one).

    >>> host_rule(token=True, allowed=["queue.example.com"]).allows(["sokka"])
    True
    >>> rule = host_rule(token=False, allowed=["queue.example.com"])
    >>> rule.allows(["localhost:8080"]), rule.allows(["queue.example.com"]), rule.allows(["sokka"])
    (True, True, False)
    >>> host_rule(token=True).allows(["[::1].evil.example"])
    False
    """
    names = set(LOOPBACK_NAMES)
    if listen is not None and listen.strip("[]") not in _EVERY_INTERFACE:
        names.add(name_of(listen))
    names.update(name_of(name) for name in allowed)
    return HostRule(names=frozenset(names), any_host=token)
