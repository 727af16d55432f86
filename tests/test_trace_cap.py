"""A 5 MB stack trace through `rcahook investigate` (issue 10): the report and the saved
investigation stay small and say how many frames were dropped, in every format."""
from __future__ import annotations

import json
import sqlite3

import pytest

from clirun import rcahook
from rcahook.demo import generate
from rcahook.rca.stacktrace import KEPT_TRACE_CHARS, MAX_FRAMES

SMALL = 200_000  # bytes: what a report or a saved investigation may take, whatever was pasted


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    made = generate(tmp_path_factory.mktemp("demo") / "repo")
    result = rcahook("index", "--repo", str(made.repo), "--quiet")
    assert result.code == 0, result.err
    return made


def huge_trace(path, *, size: int = 5_000_000) -> int:
    """A recursion through the demo's billing code, then the real crash site; returns frames."""
    lines = ["Traceback (most recent call last):",
             '  File "/srv/acme/services/billing/checkout.py", line 30, in complete_checkout',
             "    charge = charge_customer(order.customer_id, total)"]
    frames, total = 1, 0
    while total < size:
        line = '  File "/srv/acme/services/billing/charge.py", line 19, in charge_customer'
        lines += [line, "    return post_charge(session, customer_id, amount_cents, currency)"]
        total += len(line) + 70
        frames += 1
    lines += ['  File "/srv/acme/libs/http/retry.py", line 43, in request_with_retry',
              '    raise RetryExhausted(f"{method} {url} gave up after {attempts} attempt(s)", last_error)',
              "libs.http.errors.RetryExhausted: POST https://gateway.payments.example/v1/charges gave up"]
    path.write_text("\n".join(lines) + "\n")
    return frames + 1


def investigate(demo, trace, *args):
    incident = json.loads(demo.incident_file.read_text())
    return rcahook("investigate", "--repo", str(demo.repo), "--no-update", "--title", incident["title"],
                   "--time", incident["time"], "--stack-trace", str(trace), *args)


def test_huge_trace_keeps_the_json_and_the_saved_state_small(demo, tmp_path):
    trace = tmp_path / "trace.txt"
    huge_trace(trace)
    assert trace.stat().st_size >= 5_000_000
    state = demo.repo / ".git" / "rcahook" / "state.sqlite"
    before = state.stat().st_size if state.exists() else 0
    result = investigate(demo, trace, "--format", "json")
    assert result.code == 0, result.err
    assert len(result.out.encode()) < SMALL
    doc = json.loads(result.out)
    q = doc["query"]
    assert q["frames_dropped"] > 0 and len(q["frames"]) <= MAX_FRAMES
    assert q["trace_note"] and f"{q['frames_dropped']:,} dropped" in q["trace_note"]
    assert any(w == q["trace_note"] for w in doc["warnings"])
    # the crash site (innermost) and the entry point (outermost) are both still there
    assert q["frames"][0]["function"] == "request_with_retry"
    assert q["frames"][-1]["function"] == "complete_checkout"
    kept = doc["incident"]["stack_trace"]
    assert len(kept) <= KEPT_TRACE_CHARS and "characters of this stack trace left out here" in kept
    # the saved investigation holds the trimmed trace, not the 5 MB
    assert doc["id"]
    with sqlite3.connect(state) as conn:
        incident, results = conn.execute("SELECT incident, results FROM investigations WHERE id = ?",
                                         (doc["id"],)).fetchone()
    assert len(incident) + len(results) < SMALL
    assert json.loads(incident)["stack_trace"] == kept
    assert state.stat().st_size - before < SMALL


def test_text_and_markdown_say_how_many_frames_were_dropped(demo, tmp_path):
    trace = tmp_path / "trace.txt"
    huge_trace(trace, size=400_000)
    text = investigate(demo, trace, "--no-save")
    assert text.code == 0, text.err
    assert "note: stack trace:" in text.out and "dropped from the middle" in text.out
    md = investigate(demo, trace, "--no-save", "--format", "markdown")
    assert md.code == 0, md.err
    assert "> note: stack trace:" in md.out and "dropped from the middle" in md.out
    assert len(md.out.encode()) < SMALL


def test_huge_trace_from_stdin_and_from_an_incident_file_is_capped(demo, tmp_path):
    trace = tmp_path / "trace.txt"
    huge_trace(trace, size=3_000_000)
    incident = json.loads(demo.incident_file.read_text())
    result = rcahook("investigate", "--repo", str(demo.repo), "--no-update", "--no-save", "--format", "json",
                     "--title", incident["title"], "--time", incident["time"], "--stack-trace", "-",
                     input=trace.read_text())
    assert result.code == 0, result.err
    assert len(result.out.encode()) < SMALL and json.loads(result.out)["query"]["frames_dropped"] > 0
    incident["stack_trace"] = trace.read_text().splitlines()
    (tmp_path / "incident.json").write_text(json.dumps(incident))
    result = rcahook("investigate", "--repo", str(demo.repo), "--no-update", "--no-save", "--format", "json",
                     "--incident", str(tmp_path / "incident.json"))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert len(result.out.encode()) < SMALL and doc["query"]["frames_dropped"] > 0
