"""Sphinx configuration of sokka's API reference (``docs/api``).

Built by .ci/run with warnings as errors::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -n -q docs/api /tmp/sokka-api

Every page documents the public names (``sokka.__all__``,
``sokka.asyncio.__all__``, ``sokka.testing.__all__``) from their docstrings,
by the name a user imports them under; tests/docs/test_api_reference.py
checks that each of those names is on a page and has a docstring.
"""

from __future__ import annotations

import inspect
from typing import Any

project = "sokka"
author = "the sokka authors"
extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
# The docstrings write ``code`` in reST's double backquotes; a single-quoted
# `name` is read as a cross-reference to a Python object.
default_role = "py:obj"
# No "Bases:" line: a public class's bases are mostly private machinery
# (WorkerCore, EventCalls); the exceptions show theirs (errors.rst).
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Names of other libraries (pyrsistent, returns, SQLAlchemy, httpx, the
# standard library) in signatures have no page here: not a broken reference.
nitpick_ignore_regex = [
    (r"py:.*", r"(pyrsistent|returns|sqlalchemy|httpx|starlette|psycopg|click)\..*"),
    # OpenTelemetry's (the tracing extra), imported for type checking only.
    (r"py:.*", r"(opentelemetry\..*|Tracer|Span)"),
    (r"py:.*", r"(collections\.abc|typing|types|enum|asyncio|concurrent|threading|datetime)\..*"),
    (r"py:.*", r"contextlib\..*"),
    # asyncio.Task's own module, as autodoc spells a return annotation of it.
    (r"py:.*", r"_asyncio\..*"),
    (r"py:.*", r"(PMap|PVector|Result|Connection|Engine|Session|Sequence|Mapping|Iterable)"),
    (r"py:.*", r"(Callable|Awaitable|Iterator|AsyncIterator|Any|TypeVar|_[A-Za-z]+)"),
    (r"py:class", r"(int|str|float|bool|bytes|object|None|type|BaseException|Exception)"),
    (r"py:class", r"(Random|UnionType|Enum|StrEnum|Protocol|Generic|NamedTuple)"),
    # Type variables and private helpers (``_H``, ``_OwnerEvent``) have no page.
    (r"py:class", r".*\._[A-Za-z]\w*"),
]


def _protocol_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """A store method without a docstring of its own implements the store
    protocol's method of that name: show the protocol's contract, and say so."""
    if lines or what != "method":
        return
    from sokka import TaskStore
    from sokka.asyncio import AsyncTaskStore

    method = name.rsplit(".", 1)[-1]
    for protocol, shown in (
        (TaskStore, "sokka.TaskStore"),
        (AsyncTaskStore, "sokka.asyncio.AsyncTaskStore"),
    ):
        own = getattr(protocol, method, None)
        contract = getattr(own, "__doc__", None)
        if contract and own is not obj:
            lines.extend(
                [
                    f"Implements :meth:`{shown}.{method}`:",
                    "",
                    *inspect.cleandoc(contract).splitlines(),
                ]
            )
            return


def _store_method(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Keep a store's method that has no docstring of its own when it is a
    store-protocol method: ``_protocol_docstring`` gives it the contract."""
    if not skip or what != "class" or name.startswith("_"):
        return None
    from sokka import TaskStore
    from sokka.asyncio import AsyncTaskStore

    if any(inspect.getdoc(getattr(p, name, None)) for p in (TaskStore, AsyncTaskStore)):
        return False
    return None


def _public_name(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """A signature names a type where it is defined (``sokka.core.supervision.
    Monitored``); the reference documents it where users import it
    (``sokka.Monitored``): resolve the one to the other."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("sokka."):
        return None
    domain = env.get_domain("py")
    last = target.rsplit(".", 1)[-1]
    for public in (f"sokka.{last}", f"sokka.asyncio.{last}", f"sokka.testing.{last}"):
        if public in domain.objects:
            node["reftarget"] = public
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
            )
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _protocol_docstring)
    app.connect("autodoc-skip-member", _store_method)
    app.connect("missing-reference", _public_name)
