"""User mistakes become one line on stderr per problem and exit code 2, never a traceback.

A file with several problems (a catalog, a sources.yaml) prints every problem, each on its
own line (`error: file:line: message`), so they can all be fixed in one go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import typer

from pricing_catalog.errors import CatalogError, CatalogErrors
from transforms.canonical_reader import InputError

EXIT_USER_ERROR = 2


def one_line(message: object) -> str:
    """A message on one line: embedded newlines (a YAML parser's excerpt, a path with a
    newline in it) would otherwise look like separate errors, or hide the next one."""
    return " ".join(str(message).split()) or "unknown error"


def _report(errors: Iterable[object]) -> None:
    for error in errors:
        typer.echo(f"error: {one_line(error)}", err=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except CatalogErrors as exc:
        _report(exc.errors)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except (CatalogError, InputError) as exc:
        # sources.config.ConfigErrors (every problem of a sources.yaml) carries `errors`;
        # matched by attribute so that every command does not import fsspec and yaml.
        _report(getattr(exc, "errors", None) or [exc])
        raise typer.Exit(EXIT_USER_ERROR) from None
