"""User mistakes become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from pricing_catalog.errors import CatalogError, CatalogErrors
from transforms.canonical_reader import InputError

EXIT_USER_ERROR = 2


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except CatalogErrors as exc:
        for error in exc.errors:
            typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except (CatalogError, InputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
