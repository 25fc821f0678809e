"""Log lines that a client cannot forge: control characters in a message are escaped.

A request path or id may carry a newline or a NUL (``GET /v1/players/p1%0Aforged``); written raw, it
would start a log line of the client's making (issue 10). The message part of every record is
escaped (``\\n`` -> ``\\x0a``); a traceback appended to it keeps its own lines.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def escape(text: str) -> str:
    """``text`` with each control character written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape(record.message)
        return super().formatMessage(record)


def configure(level: int) -> None:
    """Root logging to stderr through :class:`EscapingFormatter` (the CLI, and so ``recsys serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
