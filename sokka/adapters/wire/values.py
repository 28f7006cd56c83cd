"""What every part of the wire format shares: the JSON object type and the
problem document's media type."""

from __future__ import annotations

from typing import Any, Final, Literal

__all__ = ["PROBLEM_JSON", "JSONObject", "Returns"]

PROBLEM_JSON: Final = "application/problem+json"
JSONObject = dict[str, Any]
#: What a call answers with, as the codec writes it.
Returns = Literal["task", "tasks", "page", "results", "counts", "purged", "changed", "topics"]
