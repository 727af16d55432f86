from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rcahook.errors import BadInputError
from rcahook.rca.incident import (
    Incident,
    incident_from_mapping,
    load_incident,
    merge,
    parse_duration,
    parse_time,
)

UTC = timezone.utc

FULL = {
    "title": "ip addr show crashes on interfaces with altnames",
    "description": "Segfault since this morning's deploy.\nSeen on all routers.",
    "time": "2024-05-01T12:00:00Z",
    "at": "v6.9.0",
    "since": "7d",
    "impacted_paths": ["ip/ipaddress.c", "./lib/libnetlink.c", "lib\\utils.c"],
    "services": ["edge-router"],
    "stack_trace": "#0  0x1 in parse_rtattr_flags (x=1) at lib/libnetlink.c:1512",
}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_load_json(tmp_path):
    incident = load_incident(write(tmp_path, "incident.json", json.dumps(FULL)))
    assert incident == Incident(
        title="ip addr show crashes on interfaces with altnames",
        description="Segfault since this morning's deploy.\nSeen on all routers.",
        time=datetime(2024, 5, 1, 12, tzinfo=UTC),
        at="v6.9.0",
        since=timedelta(days=7),
        window=None,
        impacted_paths=("ip/ipaddress.c", "lib/libnetlink.c", "lib/utils.c"),
        services=("edge-router",),
        stack_trace="#0  0x1 in parse_rtattr_flags (x=1) at lib/libnetlink.c:1512",
    )


YAML = """\
title: ip addr show crashes on interfaces with altnames
description: |
  Segfault since this morning's deploy.
  Seen on all routers.
time: 2024-05-01T12:00:00Z
at: v6.9.0
since: 7d
impacted_paths:
  - ip/ipaddress.c
  - ./lib/libnetlink.c
  - lib\\utils.c
services: [edge-router]
stack_trace: "#0  0x1 in parse_rtattr_flags (x=1) at lib/libnetlink.c:1512"
"""


@pytest.mark.parametrize("name", ["incident.yaml", "incident.yml", "incident.txt", "incident"])
def test_load_yaml_same_as_json(tmp_path, name):
    from_json = load_incident(write(tmp_path, "i.json", json.dumps(FULL)))
    assert load_incident(write(tmp_path, name, YAML)) == from_json


def test_json_without_extension_is_sniffed(tmp_path):
    assert load_incident(write(tmp_path, "incident", "  " + json.dumps(FULL))).title == FULL["title"]


def test_minimal_incident_defaults(tmp_path):
    incident = load_incident(write(tmp_path, "i.yaml", "title: checkout returns 500\n"))
    assert incident == Incident(title="checkout returns 500")
    assert incident.description == "" and incident.time is None and incident.since is None


def test_window_instead_of_since(tmp_path):
    incident = load_incident(write(tmp_path, "i.json", '{"title": "t", "window": 200}'))
    assert incident.window == 200 and incident.since is None


def test_stack_trace_as_list_of_lines():
    incident = incident_from_mapping({"title": "t", "stack_trace": ["Traceback:", "  File \"x.py\", line 1"]})
    assert incident.stack_trace == 'Traceback:\n  File "x.py", line 1'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("time: 2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("time: 2024-05-01 12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # naive: UTC
        ("time: 2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),  # YAML date
        ("time: '2024-05-01'", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_yaml_native_timestamps(tmp_path, value, expected):
    incident = load_incident(write(tmp_path, "i.yaml", f"title: t\n{value}\n"))
    assert incident.time == expected
    assert incident.time.tzinfo is not None


def test_error_names_file_field_and_example(tmp_path):
    path = write(tmp_path, "incident.json", '{"title": "t", "time": "yesterday"}')
    with pytest.raises(BadInputError) as err:
        load_incident(path)
    assert str(err.value) == (
        f"{path}: field 'time' must be ISO 8601 (e.g. 2024-05-01T12:00:00Z), got 'yesterday'"
    )
    assert err.value.exit_code == 15


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "t", "impacted_path": ["x"]},
         "incident: unknown field 'impacted_path' (did you mean 'impacted_paths'?); known fields are"),
        ({"title": "t", "colour": 1, "size": 2}, "incident: unknown fields 'colour', 'size'"),
        ({"description": "d"}, "incident: field 'title' is required"),
        ({"title": "  "}, "incident: field 'title' must be a non-empty string, got a string ('  ')"),
        ({"title": 5}, "incident: field 'title' must be a non-empty string, got a number (5); quote it in YAML"),
        ({"title": "t", "description": ["a"]}, "incident: field 'description' must be a string, got a list"),
        ({"title": "t", "at": 1234567},
         "incident: field 'at' must be a string, got a number (1234567); quote it in YAML"),
        ({"title": "t", "time": 1714564800},
         "incident: field 'time' must be ISO 8601 (e.g. 2024-05-01T12:00:00Z), got a number (1714564800)"),
        ({"title": "t", "since": "two weeks"}, "incident: field 'since' must be a duration such as '14d'"),
        ({"title": "t", "since": 14},
         "incident: field 'since' must be a duration such as '14d', '36h', '2w', '90m' or '1d12h', got a number (14)"),
        ({"title": "t", "window": 0},
         "incident: field 'window' must be a positive whole number of commits, got a number (0)"),
        ({"title": "t", "window": True},
         "incident: field 'window' must be a positive whole number of commits, got a boolean (True)"),
        ({"title": "t", "window": "50"},
         "incident: field 'window' must be a positive whole number of commits, got a string ('50')"),
        ({"title": "t", "impacted_paths": "ip/ip.c"},
         "incident: field 'impacted_paths' must be a list of non-empty strings, got a string"),
        ({"title": "t", "services": ["api", 3]},
         "incident: field 'services' must be a list of non-empty strings, got a list"),
        ({"title": "t", "stack_trace": {"a": 1}},
         "incident: field 'stack_trace' must be a string or a list of lines (strings), got a mapping"),
        ({"title": "t", "since": "7d", "window": 10}, "incident: fields 'since' and 'window' both given"),
    ],
)
def test_validation_errors(data, message):
    with pytest.raises(BadInputError) as err:
        incident_from_mapping(data)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("i.json", '{"title": "t",}', "not valid JSON at line 1 column 15"),
        ("i.yaml", "title: [unclosed\n", "not valid YAML at line 2"),
        ("i.yaml", "- title: t\n", "must be a mapping of fields (title, description, time, ...), got a list"),
        ("i.yaml", "", "must be a mapping of fields (title, description, time, ...), got nothing (null)"),
    ],
)
def test_file_level_errors(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(BadInputError) as err:
        load_incident(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(BadInputError, match="no such incident file"):
        load_incident(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_bytes(b'{"title": "\xff\xfe"}')
    with pytest.raises(BadInputError, match="must be UTF-8"):
        load_incident(tmp_path / "bad.json")


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "i.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"title": "caf\u00e9"}).encode())
    assert load_incident(tmp_path / "i.json").title == "caf\u00e9"


# --- parse_time / parse_duration -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.250+00:00", datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2024-05-01T08:00:00-04:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01 12:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("20240501T120000Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (" 2024-05-01T12:00:00Z ", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_parse_time(value, expected):
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_parse_time_now_is_aware_and_current():
    before = datetime.now(UTC)
    parsed = parse_time("NOW")
    assert parsed.tzinfo is not None
    assert before <= parsed <= datetime.now(UTC)


@pytest.mark.parametrize("value", ["yesterday", "", "2024-13-01", "12:00", "2024-05-01T25:00Z"])
def test_parse_time_rejects(value):
    with pytest.raises(BadInputError, match=r"time must be ISO 8601 \(e\.g\. 2024-05-01T12:00:00Z\) or 'now'"):
        parse_time(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("14d", timedelta(days=14)),
        ("36h", timedelta(hours=36)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("45s", timedelta(seconds=45)),
        ("2W1D", timedelta(days=15)),
        (" 3d ", timedelta(days=3)),
    ],
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["14", "d", "", "0d", "-1d", "1.5d", "1y", "14 days", "1d12", "99999999999w"])
def test_parse_duration_rejects(value):
    with pytest.raises(BadInputError, match="duration must be a positive number of units such as '14d'"):
        parse_duration(value)


# --- merge -----------------------------------------------------------------------------


BASE = Incident(
    title="from file",
    description="file description",
    since=timedelta(days=7),
    impacted_paths=("a.c",),
    services=("api",),
)


def test_merge_overrides_given_fields_only():
    merged = merge(BASE, title="from flag", description=None, services=(), impacted_paths=["b.c", "c.c"])
    assert merged.title == "from flag"
    assert merged.description == "file description"
    assert merged.services == ("api",)
    assert merged.impacted_paths == ("b.c", "c.c")
    assert BASE.title == "from file"  # unchanged


def test_merge_window_replaces_since_and_back():
    by_window = merge(BASE, window=50)
    assert by_window.window == 50 and by_window.since is None
    by_since = merge(by_window, since=timedelta(days=2))
    assert by_since.since == timedelta(days=2) and by_since.window is None
    both = merge(BASE, window=5, since=timedelta(days=1))
    assert both.window == 5 and both.since == timedelta(days=1)


def test_merge_time_and_single_string_sequence():
    when = datetime(2024, 5, 1, tzinfo=UTC)
    merged = merge(BASE, time=when, services="db")
    assert merged.time == when and merged.services == ("db",)


def test_merge_rejects_unknown_fields():
    with pytest.raises(TypeError, match="colour"):
        merge(BASE, colour="red")  # type: ignore[call-arg]


def test_examples_in_the_docs_load(tmp_path):
    doc = (Path(__file__).parent.parent / "docs" / "incident.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(json|yaml)\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) == 3
    for i, (kind, body) in enumerate(blocks):
        incident = load_incident(write(tmp_path, f"example{i}.{kind}", body))
        assert incident.title
    json_example = load_incident(write(tmp_path, "e.json", blocks[0][1]))
    assert json_example.stack_trace.count("\n") == 1
    yaml_example = load_incident(write(tmp_path, "e.yaml", blocks[1][1]))
    assert yaml_example.window == 200 and yaml_example.time == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_huge_stack_trace_field_is_capped_at_both_ends():
    from rcahook.rca.stacktrace import MAX_TRACE_CHARS, left_out

    lines = ["Traceback (most recent call last):"] + [f'  File "x{i}.py", line {i}, in f{i}' for i in range(120_000)]
    incident = incident_from_mapping({"title": "t", "stack_trace": lines + ["ValueError: boom"]})
    trace = incident.stack_trace
    assert len(trace) <= MAX_TRACE_CHARS < len("\n".join(lines))
    assert trace.startswith("Traceback") and trace.endswith("ValueError: boom")
    assert left_out(trace) > 0
