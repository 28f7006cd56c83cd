"""Every public name has a documented contract, and the API reference shows it.

The public names are those of ``sokka.__all__``, ``sokka.asyncio.__all__``
and ``sokka.testing.__all__``. Each must have a docstring of its own (a
type alias: a ``#:`` comment above its definition, which Sphinx reads), each
public method and property of a public class too (a store's method may
rely on the store protocol's docstring, which the reference then shows),
and each must be on a page of the reference (``docs/api/*.rst``). The
reference itself is built by .ci/run with warnings as errors (the ``docs``
extra: ``sphinx-build -W --keep-going -n docs/api OUT``).
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sokka
import sokka.asyncio
import sokka.testing
from sokka import TaskStore
from sokka.asyncio import AsyncTaskStore

REPO = Path(__file__).resolve().parents[2]
API = REPO / "docs" / "api"
NAMESPACES = [sokka, sokka.asyncio, sokka.testing]
PUBLIC = [(ns, name) for ns in NAMESPACES for name in ns.__all__]

_DIRECTIVE = re.compile(r"^\.\. (auto\w+|module|currentmodule):: (\S+)", re.M)


def documented_on_pages() -> set[str]:
    """The dotted names the reference's pages document (``auto*`` directives)."""
    found: set[str] = set()
    for page in sorted(API.glob("*.rst")):
        module = ""
        for kind, target in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            if kind in ("module", "currentmodule"):
                module = target
            elif "." in target:
                found.add(target)
            else:
                found.add(f"{module}.{target}")
    return found


def _own_docstring(obj: Any) -> str | None:
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        # A dataclass without a docstring gets its signature as one.
        if doc and doc.startswith(f"{obj.__name__}("):
            return None
        return doc
    return getattr(obj, "__doc__", None)


def _alias_comment(name: str) -> str | None:
    """The ``#:`` comment above ``name = ...`` (or ``type name = ...``) in a sokka module."""
    definition = re.compile(rf"^(?:type\s+)?{re.escape(name)}(?:\s*:[^=]*)?\s*=", re.M)
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith("sokka") or getattr(module, "__file__", None) is None:
            continue
        source = Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[arg-type]
        match = definition.search(source)
        if match is None:
            continue
        before = source[: match.start()].rstrip("\n").splitlines()
        comment = []
        while before and before[-1].startswith("#:"):
            comment.insert(0, before.pop()[2:].strip())
        if comment:
            return " ".join(comment)
    return None


def docstring_of(namespace: ModuleType, name: str) -> str | None:
    obj = getattr(namespace, name)
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return _own_docstring(obj)
    return _alias_comment(name)  # a type alias: Outcome, AsyncHandler, Monitored


@pytest.mark.parametrize(
    ("namespace", "name"), PUBLIC, ids=[f"{n.__name__}.{x}" for n, x in PUBLIC]
)
def test_public_name_has_a_docstring(namespace: ModuleType, name: str) -> None:
    doc = docstring_of(namespace, name)
    assert (doc or "").strip(), f"{namespace.__name__}.{name} has no docstring stating its contract"


@pytest.mark.parametrize(
    ("namespace", "name"), PUBLIC, ids=[f"{n.__name__}.{x}" for n, x in PUBLIC]
)
def test_public_name_is_in_the_api_reference(namespace: ModuleType, name: str) -> None:
    on_pages = documented_on_pages()
    obj = getattr(namespace, name)
    # A name re-exported unchanged (sokka.asyncio.ok is sokka.ok) is documented once.
    shown_as = [f"{ns.__name__}.{name}" for ns in NAMESPACES if getattr(ns, name, None) is obj]
    assert any(n in on_pages for n in shown_as), (
        f"{namespace.__name__}.{name} is on no page of docs/api: add an auto* directive"
    )


def _protocol_contract(name: str) -> str | None:
    for protocol in (TaskStore, AsyncTaskStore):
        doc = getattr(getattr(protocol, name, None), "__doc__", None)
        if doc:
            return str(doc)
    return None


def undocumented_members() -> list[str]:
    """Public methods and properties of public classes, defined in sokka, without a
    docstring (their own, an inherited one, or the store protocol's)."""
    missing = []
    seen: set[type] = set()
    for namespace, name in PUBLIC:
        cls = getattr(namespace, name)
        if not inspect.isclass(cls) or cls in seen:
            continue
        seen.add(cls)
        for member_name, member in inspect.getmembers(cls):
            if member_name.startswith("_"):
                continue
            owner = next((k for k in cls.__mro__ if member_name in k.__dict__), None)
            if owner is None or not owner.__module__.startswith("sokka"):
                continue  # object's, Exception's, Enum's own
            raw = owner.__dict__[member_name]
            if not (
                inspect.isfunction(raw) or isinstance(raw, (property, classmethod, staticmethod))
            ):
                continue  # a field or an enum member: the class's docstring describes it
            if inspect.getdoc(member) or _protocol_contract(member_name):
                continue
            missing.append(f"{namespace.__name__}.{name}.{member_name}")
    return missing


def test_public_methods_and_properties_have_docstrings() -> None:
    assert undocumented_members() == []


class _Bare:
    def run(self) -> None:
        pass


@dataclass
class _Auto:
    x: int


def test_the_checks_see_a_missing_docstring() -> None:
    # The checks above are only worth something if they can fail.
    assert _own_docstring(_Bare) is None
    assert _own_docstring(_Auto) is None  # the signature dataclass made up is not one
    assert inspect.getdoc(_Bare.run) is None
    assert _own_docstring(sokka.App)
    assert _alias_comment("Outcome") == (
        "What a handler returns: ``ok()``, ``failed(error)`` or ``snoozed(ms)``."
    )
    assert _alias_comment("NoSuchAlias") is None
