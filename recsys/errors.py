"""Domain errors. Each carries its data as attributes; the CLI and the API map them to messages."""

from __future__ import annotations


class RecsysError(Exception):
    """Base of every error the project raises on purpose (bad input, bad configuration, bad state)."""


class ConfigError(RecsysError):
    """A setting has an invalid value."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        self.variable = variable
        self.value = value
        self.reason = reason
        super().__init__(f"{variable}={value!r}: {reason}")


class InputError(RecsysError):
    """Input data is invalid. ``source`` names the file or request, ``row`` the 1-based data row."""

    def __init__(self, source: str, message: str, *, row: int | None = None, field: str | None = None) -> None:
        self.source = source
        self.row = row
        self.field = field
        self.message = message
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
