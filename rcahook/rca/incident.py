"""The incident under investigation: loaded from a JSON or YAML file, then overridden by flags.

The schema is documented in docs/incident.md; keep the two in step.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import yaml

from rcahook.errors import BadInputError
from rcahook.rca.stacktrace import MAX_TRACE_CHARS, cut_middle


@dataclass(frozen=True)
class Incident:
    title: str
    description: str = ""
    time: datetime | None = None  # when it was noticed, timezone-aware; None means now
    at: str | None = None  # revision that was running; None means HEAD (the caller decides)
    since: timedelta | None = None  # how far back to search; the caller's default is 14 days
    window: int | None = None  # the N most recent commits, instead of `since`
    impacted_paths: tuple[str, ...] = ()  # repository paths known to be involved
    services: tuple[str, ...] = ()  # service or component names
    stack_trace: str | None = None  # raw text, parsed by rcahook.rca.stacktrace


FIELDS = tuple(f.name for f in dataclasses.fields(Incident))
TIME_EXAMPLE = "2024-05-01T12:00:00Z"
DURATION_EXAMPLE = "'14d', '36h', '2w', '90m' or '1d12h'"

_DURATION_PART = re.compile(r"\s*(\d+)\s*([wdhms])", re.IGNORECASE)
_DURATION_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_time(value: str) -> datetime:
    """ISO 8601 (`2024-05-01T12:00:00Z`, `2024-05-01 12:00+02:00`, `2024-05-01`) or `now`.

    Returns a timezone-aware datetime; a time without an offset, and a bare date
    (midnight), are taken as UTC.
    """
    parsed = _parse_time(value)
    if parsed is None:
        raise BadInputError(
            f"time must be ISO 8601 (e.g. {TIME_EXAMPLE}) or 'now', got {value!r}"
        )
    return parsed


def _parse_time(value: str) -> datetime | None:
    text = value.strip()
    if text.lower() == "now":
        return datetime.now(timezone.utc)
    if text[-1:] in ("Z", "z"):
        # fromisoformat() accepts "Z" only from Python 3.11 on.
        text = text[:-1] + "+00:00"
    try:
        parsed = _fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


# The basic form, 20240501T120000+0200: fromisoformat() reads it only from Python 3.11 on.
_BASIC_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})(?:([T ])(\d{2})(\d{2})(\d{2})?(\.\d+)?)?(?:([+-]\d{2}):?(\d{2})?)?")


def _fromisoformat(text: str) -> datetime:
    """datetime.fromisoformat() as Python 3.11 reads it, on 3.10 too (the floor): 3.10's
    reads only the extended form, with 3 or 6 fraction digits."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        if sys.version_info >= (3, 11):
            raise
    m = _BASIC_TIME.fullmatch(text)
    if m:
        y, mo, d, sep, h, mi, sec, frac, off_h, off_m = m.groups()
        text = f"{y}-{mo}-{d}" + (f"{sep}{h}:{mi}:{sec or '00'}{frac or ''}" if h else "")
        text += f"{off_h}:{off_m or '00'}" if off_h else ""
    text = re.sub(r"\.(\d+)", lambda f: "." + f.group(1)[:6].ljust(6, "0"), text)
    return datetime.fromisoformat(text)


def parse_duration(value: str) -> timedelta:
    """A positive duration made of `<number><unit>` parts: `14d`, `36h`, `2w`, `90m`, `1d12h`.

    Units are w (weeks), d (days), h (hours), m (minutes) and s (seconds), any case;
    spaces between parts are allowed (`1d 12h`).
    """
    parsed = _parse_duration(value)
    if parsed is None:
        raise BadInputError(
            f"duration must be a positive number of units such as {DURATION_EXAMPLE}, "
            f"got {value!r}"
        )
    return parsed


def _parse_duration(value: str) -> timedelta | None:
    text = value.strip()
    pos = 0
    total = timedelta()
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return None
        unit = _DURATION_UNIT[match.group(2).lower()]
        try:
            total += timedelta(**{unit: int(match.group(1))})
        except OverflowError:
            return None
        pos = match.end()
    if total <= timedelta():
        return None
    return total


def load_incident(path: str | Path) -> Incident:
    """Read and validate an incident file: JSON for `.json`, YAML for `.yaml`/`.yml`,
    otherwise JSON when the text starts with `{` and YAML when not."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInputError(f"{source}: no such incident file; pass the path of a JSON or YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{source}: cannot read the incident file ({exc}); it must be UTF-8 JSON or YAML") from None
    suffix = Path(path).suffix.lower()
    as_json = suffix == ".json" or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{"))
    data = _parse_json(text, source) if as_json else _parse_yaml(text, source)
    return incident_from_mapping(data, source=source)


def _parse_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{source}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInputError(f"{source}: not valid YAML{where}: {problem}") from None


def incident_from_mapping(data: object, *, source: str = "incident") -> Incident:
    """Validate a decoded JSON/YAML document and build the Incident; `source` prefixes errors."""
    if not isinstance(data, Mapping):
        raise BadInputError(
            f"{source}: must be a mapping of fields (title, description, time, ...), "
            f"got {_kind(data)}"
        )
    unknown = [str(key) for key in data if key not in FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise BadInputError(
            f"{source}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"known fields are {', '.join(FIELDS)}"
        )
    if "title" not in data:
        raise BadInputError(f"{source}: field 'title' is required (a one-line summary of the incident)")
    fields = _Fields(source)
    # validated in field order, so the first bad field is the one reported
    incident = Incident(
        title=fields.required_text(data, "title"),
        description=fields.text(data, "description") or "",
        time=fields.time(data),
        at=fields.text(data, "at"),
        since=fields.duration(data),
        window=fields.window(data),
        impacted_paths=fields.paths(data),
        services=fields.names(data, "services"),
        stack_trace=fields.stack_trace(data),
    )
    if incident.since is not None and incident.window is not None:
        raise BadInputError(
            f"{source}: fields 'since' and 'window' both given; use 'since' for an age "
            f"or 'window' for a number of recent commits, not both"
        )
    return incident


def merge(base: Incident, *, title: str | None = None, description: str | None = None,
          time: datetime | None = None, at: str | None = None, since: timedelta | None = None,
          window: int | None = None, impacted_paths: str | Iterable[str] | None = None,
          services: str | Iterable[str] | None = None, stack_trace: str | None = None) -> Incident:
    """`base` with the given fields replaced, as command-line flags override file fields.

    An override of None, or an empty sequence for `impacted_paths`/`services`, means
    the flag was not given and the base value stays. Overriding `since` drops the base's
    `window` and the other way round, since one replaces the other.
    """
    def names(value: str | Iterable[str] | None, current: tuple[str, ...]) -> tuple[str, ...]:
        given = (value,) if isinstance(value, str) else tuple(value or ())
        return given or current

    if since is not None or window is not None:  # one replaces the other unless both are given
        new_since, new_window = since, window
    else:
        new_since, new_window = base.since, base.window
    return dataclasses.replace(
        base,
        title=base.title if title is None else title,
        description=base.description if description is None else description,
        time=base.time if time is None else time,
        at=base.at if at is None else at,
        since=new_since,
        window=new_window,
        impacted_paths=names(impacted_paths, base.impacted_paths),
        services=names(services, base.services),
        stack_trace=base.stack_trace if stack_trace is None else stack_trace,
    )


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", datetime: "a timestamp", date: "a date"}
    for cls, name in names.items():
        if type(value) is cls:
            return f"{name} ({value!r})" if cls in (bool, int, float, str) else name
    return type(value).__name__


class _Fields:
    """Field validators; each names the field and what it expected when it fails."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, name: str, expected: str, value: object) -> BadInputError:
        # YAML reads unquoted 2024-05-01, 1234567 or yes as dates, numbers and booleans.
        hint = "; quote it in YAML" if isinstance(value, (bool, int, float, date)) and "string" in expected else ""
        return BadInputError(f"{self.source}: field '{name}' must be {expected}, got {_kind(value)}{hint}")

    def text(self, data: Mapping, name: str) -> str | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, "a string", value)
        # YAML block scalars (`description: |`) end with a newline nobody means.
        return value.strip()

    def required_text(self, data: Mapping, name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "a non-empty string", value)
        return value.strip()

    def time(self, data: Mapping) -> datetime | None:
        value = data.get("time")
        if value is None:
            return None
        # YAML turns unquoted timestamps and dates into objects already.
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        parsed = _parse_time(value) if isinstance(value, str) else None
        if parsed is None:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise BadInputError(
                f"{self.source}: field 'time' must be ISO 8601 (e.g. {TIME_EXAMPLE}), got {shown}"
            )
        return parsed

    def duration(self, data: Mapping) -> timedelta | None:
        value = data.get("since")
        if value is None:
            return None
        parsed = _parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            shown = repr(value) if isinstance(value, str) else _kind(value)
            raise BadInputError(
                f"{self.source}: field 'since' must be a duration such as {DURATION_EXAMPLE}, got {shown}"
            )
        return parsed

    def window(self, data: Mapping) -> int | None:
        value = data.get("window")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail("window", "a positive whole number of commits", value)
        return value

    def names(self, data: Mapping, name: str) -> tuple[str, ...]:
        value = data.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(name, "a list of non-empty strings", value)
        return tuple(v.strip() for v in value)

    def paths(self, data: Mapping) -> tuple[str, ...]:
        # Users paste paths from shells and Windows tools: "./src/x.c", "src\\x.c".
        paths = []
        for path in self.names(data, "impacted_paths"):
            path = path.replace("\\", "/")
            while path.startswith("./"):
                path = path[2:]
            paths.append(path)
        return tuple(paths)

    def stack_trace(self, data: Mapping) -> str | None:
        value = data.get("stack_trace")
        if value is None:
            return None
        # A list of lines reads better than one long escaped string in JSON.
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise self.fail("stack_trace", "a string or a list of lines (strings)", value)
        # the same cap as --stack-trace FILE: both ends of a huge paste, the cut said in the text
        return cut_middle(value, MAX_TRACE_CHARS)
