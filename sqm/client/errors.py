"""The client's root error."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request the registry refused or could not answer.

    ``status`` is the HTTP status (0 when the registry was unreachable), ``code`` the
    registry's stable error code, ``details`` any further fields of its answer (for an invalid
    feed: the validator's ``findings``).
    """

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" if status == 0 else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
