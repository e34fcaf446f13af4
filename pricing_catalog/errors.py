"""Errors a user can fix, each one line naming the file, line and field."""

from __future__ import annotations


class CatalogError(Exception):
    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class CatalogErrors(Exception):
    """Every problem found in one pass, so a user fixes them all at once."""

    def __init__(self, errors: list[CatalogError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
