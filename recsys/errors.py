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
    """Input data is invalid. ``source`` names the file or request; ``row`` is the 1-based data row
    of a file (the header does not count) or of the records handed to the import's validation,
    ``index`` the 0-based position of a record in a JSON array (docs/api.md); the API never answers
    with ``row``: :meth:`in_json_array` turns it into ``index``."""

    def __init__(self, source: str, message: str, *, row: int | None = None, index: int | None = None,
                 field: str | None = None) -> None:
        self.source = source
        self.row = row
        self.index = index
        self.field = field
        self.message = message
        where = source
        if row is not None:
            where += f", row {row}"
        if index is not None:
            where += f", index {index}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")

    def in_json_array(self, batch: bool = True) -> InputError:
        """The same error about records of a JSON body: the file-style 1-based ``row`` becomes the
        0-based ``index`` (``batch``) or is dropped (a single record)."""
        if self.row is None:
            return self
        index = self.row - 1 if batch else None
        return InputError(self.source, self.message, index=index, field=self.field)


class NotFound(RecsysError):
    """A player, slot or model version the caller named does not exist."""

    def __init__(self, entity: str, identifier: object, detail: str | None = None) -> None:
        self.entity = entity
        self.identifier = identifier
        super().__init__(detail or f"no {entity} {identifier!r}")


class NotReady(RecsysError):
    """The process cannot answer this yet: no catalogue or model version in memory or in the database."""
