"""Errors of the API's own making (the library's live in ``recsys``); mapped in ``api/problems.py``."""

from __future__ import annotations

from recsys.errors import RecsysError


class NotReady(RecsysError):
    """The process cannot answer this yet: no catalogue or model version in memory or in the database."""
