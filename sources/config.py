"""`sources.yaml`: where every source's data is, and how to read it.

    sources:
      - name: litellm-prod                   # lineage `source`; unique
        kind: litellm                        # one of sources.registry.KINDS
        location: s3://acme-logs/litellm/{date:%Y-%m-%d}.jsonl   # any fsspec URL or path
        timezone: UTC                        # zone of naive timestamps (default UTC)
        trailing_days: 3                     # re-pull the last N days too (late data)
        credentials: {api_key_env: OPENAI_ADMIN_KEY}  # names of environment variables only
        options: {records_key: data}         # adapter-specific, free form

`location` is a local path (relative to the config file), a `file://` URL or any fsspec URL
(`s3://`, `gs://`, `az://`, `memory://`, ...). `{date:<strftime>}` is replaced by the day
being read; `*`, `?`, `[...]` and `**` are globbed. A LiteLLM database has no location:
give `credentials.url_env`, the variable holding its SQLAlchemy URL.

Secrets never live in this file: `credentials` holds environment variable names only, and a
value anywhere that looks like a key or token (`sk-...`, `AKIA...`, a JWT, a URL with a
password or a signature) is an error. Every error is one line, `file:line: message`, and
every error of the file is reported at once.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import hashlib
import os
import posixpath
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fsspec
import fsspec.core
import fsspec.utils
import yaml

from sources.registry import KINDS
from transforms.canonical_reader import InputError

CONFIG_ENV = "AISPEND_CONFIG"
SOURCE_KEYS = (
    "name",
    "kind",
    "location",
    "timezone",
    "credentials",
    "trailing_days",
    "options",
    "description",
)
TOP_KEYS = ("sources",)
READABLE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
DATABASE_KINDS = ("litellm",)  # kinds that can read a database through credentials.url_env
MAX_TRAILING_DAYS = 366

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api_?key|access_?key|private_?key|credential)", re.I
)
# (pattern, what it looks like): values that are secrets, whatever key they sit under.
_SECRET_VALUES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(sk|rk|pk)[-_][A-Za-z0-9_-]{8,}"), "an API key (sk-...)"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,})"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), "a Google API key"),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "a Hugging Face token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."), "a JWT"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@"), "a URL with a password"),
    (
        re.compile(
            r"[?&](sig|signature|x-amz-signature|x-goog-signature|token|access_token)=", re.I
        ),
        "a URL with a signature or token",
    ),
)


class ConfigError(InputError):
    """One problem in sources.yaml: `file:line: message`."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class ConfigErrors(InputError):
    """Every problem of one file, one per line, so they can all be fixed at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# --------------------------------------------------------------------------- YAML with lines
class _Map(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]
    duplicates: list[tuple[str, int]]


class _Seq(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader keeping the line of every mapping, key and list item (1-based)."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.duplicates = []
    for key_node, value_node in node.value:
        key = str(loader.construct_object(key_node, deep=True))
        line = key_node.start_mark.line + 1
        if key in out.key_lines:
            out.duplicates.append((key, line))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(item, deep=True) for item in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [item.start_mark.line + 1 for item in node.value]
    return out


def _keep_timestamp_text(loader: _Loader, node: yaml.ScalarNode) -> Any:
    return loader.construct_scalar(node)  # dates stay text: nothing here is a date


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _keep_timestamp_text)


def _plain(value: Any) -> Any:
    """Loaded YAML as plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    location: str | None  # absolute path or URL, date pattern kept; None for a database
    timezone: str = "UTC"
    credentials: dict[str, str] = field(default_factory=dict)  # key -> env variable NAME
    trailing_days: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    origin: str = ""  # file:line of the entry

    @property
    def produces(self) -> str:
        return KINDS[self.kind].produces

    @property
    def is_database(self) -> bool:
        return self.location is None and "url_env" in self.credentials

    @property
    def has_date_pattern(self) -> bool:
        return self.location is not None and _date_fields(self.location) > 0

    def credential(self, key: str) -> str:
        """The secret behind `credentials.<key>` (e.g. `api_key_env`), from the environment.
        Errors name the variable, never a value."""
        var = self.credentials.get(key)
        if var is None:
            raise InputError(f"{self.origin}: source {self.name} has no credentials.{key}")
        value = os.environ.get(var, "")
        if not value.strip():
            raise InputError(
                f"{self.origin}: source {self.name}: environment variable {var} is not set"
            )
        return value

    def days(self, day: dt.date) -> list[dt.date]:
        """The days to (re)read when `day` is read: the trailing window, oldest first."""
        return [day - dt.timedelta(days=n) for n in range(self.trailing_days, -1, -1)]


@dataclass
class SourcesConfig:
    path: str
    sources: list[Source]

    def __iter__(self) -> Iterator[Source]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def get(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise InputError(f"{self.path}: no source named '{name}' (sources: {known})")

    def files_for(self, source: Source | str, day: dt.date) -> list[str]:
        """The files holding `source`'s data for `day`: the date pattern expanded, wildcards
        globbed through fsspec, sorted; [] when none exist. Local files come back as plain
        paths, others as URLs with their protocol."""
        src = self.get(source) if isinstance(source, str) else source
        if src.location is None:
            raise InputError(f"{src.origin}: source {src.name} reads a database, not files")
        target = src.location.format(date=day)
        try:
            fs, fs_path = fsspec.core.url_to_fs(target)
            if globlib.has_magic(fs_path):
                matches = fs.glob(fs_path, detail=True)
                found = [p for p, info in matches.items() if info.get("type") == "file"]
            else:
                found = [fs_path] if fs.isfile(fs_path) else []
        except ImportError as exc:
            raise InputError(f"{src.origin}: source {src.name}: {exc}") from None
        except (OSError, ValueError) as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"{src.origin}: source {src.name}: cannot list {_safe_location(target)}: {detail}"
            ) from None
        local = "file" in _protocols(fs.protocol)
        return sorted(p if local else fs.unstrip_protocol(p) for p in found)

    def open(self, url: str, mode: str = "rb") -> Any:
        """An open file for any path `files_for` returned (fsspec.open)."""
        return fsspec.open(url, mode)

    def local_path(self, url: str, directory: Path) -> Path:
        """A local path for a file `files_for` returned, for readers that take one: a local
        file as it is; a remote one copied to `directory/<hash of the URL>/<its name>` (the
        suffix tells the reader the format; the hash keeps same-named files apart)."""
        fs, fs_path = fsspec.core.url_to_fs(url)
        if "file" in _protocols(fs.protocol):
            return Path(fs_path)
        folder = directory / hashlib.sha256(url.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / posixpath.basename(str(fs_path))
        try:
            fs.get_file(fs_path, str(target))
        except (OSError, ValueError) as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{_safe_location(url)}: cannot fetch: {detail}") from None
        return target


def _protocols(protocol: str | tuple[str, ...]) -> tuple[str, ...]:
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _safe_location(location: str) -> str:
    """A location without credentials, for messages (user:pass@ and query strings dropped)."""
    location = re.sub(r"://[^/@\s]*@", "://***@", location)
    return location.split("?", 1)[0]


def _date_fields(location: str) -> int:
    return sum(1 for _, name, _, _ in string.Formatter().parse(location) if name is not None)


# --------------------------------------------------------------------------- loading
def config_path(path: str | Path | None = None) -> str:
    if path is not None and str(path):
        return str(path)
    env = os.environ.get(CONFIG_ENV, "").strip()
    if env:
        return env
    raise InputError(f"no sources.yaml given: pass its path or set {CONFIG_ENV}")


def load_sources(path: str | Path | None = None) -> SourcesConfig:
    """Load and check sources.yaml (from `path`, else $AISPEND_CONFIG). Raises ConfigError
    (one problem) or ConfigErrors (several), each `file:line: message`."""
    name = config_path(path)
    try:
        with fsspec.open(name, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError, ValueError, ImportError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise ConfigError(name, None, f"cannot read file: {reason}") from None
    return parse_sources(text, name)


def parse_sources(text: str, path: str) -> SourcesConfig:
    """Check the text of a sources.yaml; `path` names it in errors and anchors relative
    locations (they are relative to the file's directory)."""
    errors: list[ConfigError] = []
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            path, mark.line + 1 if mark else None, f"invalid YAML: {problem}"
        ) from None
    if not isinstance(doc, _Map):
        raise ConfigError(path, 1, "expected a mapping with a 'sources' list")
    errors += _duplicate_keys(path, doc, "")
    for key in doc:
        if key not in TOP_KEYS:
            errors.append(
                ConfigError(
                    path, doc.key_lines[key], f"unknown top-level key '{key}' (use sources)"
                )
            )
    entries = doc.get("sources")
    sources: list[Source] = []
    if "sources" not in doc:
        errors.append(ConfigError(path, doc.line, "missing 'sources' list"))
    elif not isinstance(entries, _Seq):
        errors.append(ConfigError(path, doc.key_lines["sources"], "'sources' must be a list"))
    else:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            line = entries.item_lines[index]
            where = f"sources[{index}]"
            if not isinstance(entry, _Map):
                errors.append(ConfigError(path, line, f"{where}: expected a mapping"))
                continue
            source, problems = _parse_source(path, entry, where)
            errors += problems
            if source is None:
                continue
            if source.name in seen:
                errors.append(
                    ConfigError(
                        path,
                        entry.key_lines.get("name", entry.line),
                        f"{where}.name: '{source.name}' already used on line {seen[source.name]}",
                    )
                )
                continue
            seen[source.name] = entry.line
            sources.append(source)
    errors.sort(key=lambda e: e.line or 0)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return SourcesConfig(path=path, sources=sources)


def _duplicate_keys(path: str, mapping: _Map, where: str) -> list[ConfigError]:
    out = [
        ConfigError(path, line, f"{where}{'.' if where else ''}{key}: given twice")
        for key, line in mapping.duplicates
    ]
    for key, value in mapping.items():
        label = f"{where}{'.' if where else ''}{key}"
        items = [(label, value)] if isinstance(value, _Map) else []
        if isinstance(value, _Seq):
            items = [(f"{label}[{i}]", v) for i, v in enumerate(value) if isinstance(v, _Map)]
        for sub, item in items:
            out += _duplicate_keys(path, item, sub)
    return out


def _parse_source(path: str, entry: _Map, where: str) -> tuple[Source | None, list[ConfigError]]:
    errors: list[ConfigError] = []

    def err(key: str | None, message: str, line: int | None = None) -> None:
        at = line or (entry.key_lines.get(key, entry.line) if key else entry.line)
        label = f"{where}.{key}" if key else where
        errors.append(ConfigError(path, at, f"{label}: {message}"))

    for key in entry:
        if key not in SOURCE_KEYS:
            err(key, f"unknown field (known: {', '.join(SOURCE_KEYS)})")

    name = entry.get("name")
    if name is None:
        err(None, "missing required field 'name'")
    elif not isinstance(name, str) or not _NAME.match(name):
        err("name", "expected letters, digits, '_', '.' or '-' (no spaces)")
    kind = entry.get("kind")
    if kind is None:
        err(None, "missing required field 'kind'")
    elif not isinstance(kind, str) or kind not in KINDS:
        err("kind", f"unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})")

    timezone = entry.get("timezone", "UTC")
    if not isinstance(timezone, str) or not _valid_zone(timezone):
        err("timezone", f"unknown time zone {timezone!r} (use an IANA name such as UTC)")

    trailing = entry.get("trailing_days", 0)
    if isinstance(trailing, bool) or not isinstance(trailing, int):
        err("trailing_days", f"expected a whole number of days, got {trailing!r}")
    elif not 0 <= trailing <= MAX_TRAILING_DAYS:
        err("trailing_days", f"expected 0 to {MAX_TRAILING_DAYS}, got {trailing}")

    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        err("description", "expected text")

    credentials: dict[str, str] = {}
    raw_credentials = entry.get("credentials")
    if raw_credentials is not None and not isinstance(raw_credentials, _Map):
        err("credentials", "expected a mapping of <name>_env: ENVIRONMENT_VARIABLE")
    elif isinstance(raw_credentials, _Map):
        for key, value in raw_credentials.items():
            line = raw_credentials.key_lines[key]
            label = f"credentials.{key}"
            looks = _looks_like_secret(value) if isinstance(value, str) else None
            if looks:
                err(
                    label,
                    f"looks like a literal secret ({looks}): put it in an environment "
                    "variable and give the variable's name",
                    line,
                )
            elif not key.endswith("_env"):
                err(
                    label,
                    f"only environment variable names go here: write {key}_env: VARIABLE_NAME",
                    line,
                )
            elif not isinstance(value, str) or not _ENV_NAME.match(value):
                err(label, "expected an environment variable name such as OPENAI_ADMIN_KEY", line)
            else:
                credentials[key] = value

    options: dict[str, Any] = {}
    raw_options = entry.get("options")
    if raw_options is not None and not isinstance(raw_options, _Map):
        err("options", "expected a mapping")
    elif isinstance(raw_options, _Map):
        for label, at, message in _secrets_in(raw_options, "options"):
            err(label, message, at)
        options = _plain(raw_options)

    location = entry.get("location")
    resolved: str | None = None
    if location is None:
        if "url_env" not in credentials:
            err(None, "missing 'location' (or credentials.url_env for a LiteLLM database)")
        elif isinstance(kind, str) and kind in KINDS and kind not in DATABASE_KINDS:
            err("credentials", f"kind {kind} cannot read a database: give a location")
    elif not isinstance(location, str) or not location.strip():
        err("location", "expected a path or URL")
    elif "url_env" in credentials:
        err("location", "give either location (files) or credentials.url_env (a database)")
    else:
        problem = _location_problem(location)
        if problem:
            err("location", problem)
        else:
            resolved = _resolve(location.strip(), path)

    if errors:
        return None, errors
    return (
        Source(
            name=str(name),
            kind=str(kind),
            location=resolved,
            timezone=str(timezone),
            credentials=credentials,
            trailing_days=int(trailing),
            options=options,
            description=description,
            origin=f"{path}:{entry.line}",
        ),
        [],
    )


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _looks_like_secret(value: str) -> str | None:
    for pattern, what in _SECRET_VALUES:
        if pattern.search(value):
            return what
    return None


def _secrets_in(value: Any, label: str) -> Iterator[tuple[str, int | None, str]]:
    """(label, line, message) for every literal secret inside an options mapping."""
    if isinstance(value, _Map):
        for key, item in value.items():
            sub = f"{label}.{key}"
            line = value.key_lines[key]
            if isinstance(item, str) and item.strip():
                looks = _looks_like_secret(item)
                if looks:
                    yield sub, line, f"looks like a literal secret ({looks}): use {key}_env"
                    continue
                if _SECRET_KEY.search(key) and not key.endswith("_env"):
                    yield (
                        sub,
                        line,
                        (
                            f"a secret cannot be written here: put it in an environment variable "
                            f"and write {key}_env: VARIABLE_NAME"
                        ),
                    )
                    continue
            yield from _secrets_in(item, sub)
    elif isinstance(value, _Seq):
        for index, item in enumerate(value):
            if isinstance(item, str) and _looks_like_secret(item):
                yield (
                    f"{label}[{index}]",
                    value.item_lines[index],
                    (f"looks like a literal secret ({_looks_like_secret(item)})"),
                )
            else:
                yield from _secrets_in(item, f"{label}[{index}]")


def _location_problem(location: str) -> str | None:
    looks = _looks_like_secret(location)
    if looks:
        return f"looks like it carries a secret ({looks}): use credentials and *_env names"
    try:
        fields = list(string.Formatter().parse(location))
    except ValueError as exc:
        return f"bad date pattern: {exc} (write {{date:%Y-%m-%d}}; a literal brace is {{{{)"
    for _, field_name, spec, conversion in fields:
        if field_name is None:
            continue
        if field_name != "date" or conversion:
            return f"unknown placeholder {{{field_name}}} (use {{date:%Y-%m-%d}})"
        if spec and "%" not in spec:
            return f"date pattern {{date:{spec}}} has no strftime code (e.g. {{date:%Y-%m-%d}})"
    try:
        sample = location.format(date=dt.date(2025, 6, 1))
    except (ValueError, KeyError, IndexError) as exc:
        return f"bad date pattern: {exc}"
    for protocol in _url_protocols(sample):
        if protocol not in fsspec.available_protocols():
            return f"unknown filesystem protocol '{protocol}'"
    leaf = posixpath.basename(sample.split("::")[-1].split("?", 1)[0])
    suffix = posixpath.splitext(leaf)[1].lower()
    if suffix and not globlib.has_magic(suffix) and suffix not in READABLE_SUFFIXES:
        return f"file type '{suffix}' cannot be read (use {', '.join(READABLE_SUFFIXES)})"
    return None


def _url_protocols(location: str) -> list[str]:
    out = []
    for part in location.split("::"):
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", part)
        if match:
            out.append(match.group(1).lower())
    return out


def _resolve(location: str, config: str) -> str:
    """Relative local paths are relative to the config file's directory."""
    if _url_protocols(location):
        return location
    expanded = os.path.expanduser(location)
    if os.path.isabs(expanded):
        return expanded
    if _url_protocols(config):
        base = config.rsplit("/", 1)[0]
        return f"{base}/{expanded}"
    return str(Path(config).resolve().parent / expanded)
