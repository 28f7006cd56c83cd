"""Logs as JSON lines, for log collectors (``--log-format json``).

One JSON object per line: ``time`` (UTC, ISO 8601 with milliseconds),
``level``, ``logger``, ``message`` (formatted), then the structured fields
the log call passed in ``extra`` (such as ``task_id``, ``topic``,
``attempt``, ``worker``), and ``exception`` (the formatted traceback) when
there is one. A value that is not JSON is written as its ``str``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

__all__ = ["JSONFormatter"]

#: A LogRecord's own attributes: everything else on a record came from ``extra``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """Formats each record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
