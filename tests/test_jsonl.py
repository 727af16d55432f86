"""The one resumable JSONL results file (rcahook/jsonl.py), on real files."""
from __future__ import annotations

import json

import pytest

from rcahook.errors import ConfigError
from rcahook.jsonl import ResultsFile

FIX = "pass another --output, or delete the file"


def results(path, *, window=20, parts=None) -> ResultsFile:
    header = {"format": "test/1", "head": "abc", "window": window, "parts": parts or {"bm25": {}}}
    return ResultsFile(path, header, checked=("head", "window"), parts="parts", fix=FIX)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_with_the_same_settings_continues(tmp_path):
    path = tmp_path / "r.jsonl"
    first = results(path)
    assert first.load() == []
    with first.open(resume=True) as f:
        f.write({"type": "result", "n": 1})
    again = results(path)
    assert again.load() == [{"type": "result", "n": 1}]
    with again.open(resume=True) as f:
        f.write({"type": "result", "n": 2})
    rows = lines(path)
    assert [r["type"] for r in rows] == ["header", "result", "header", "result"]
    assert [r["n"] for r in results(path).load()] == [1, 2]


def test_without_resume_the_file_starts_afresh(tmp_path):
    path = tmp_path / "r.jsonl"
    with results(path).open(resume=True) as f:
        f.write({"type": "result", "n": 1})
    with results(path, window=99).open(resume=False) as f:
        f.write({"type": "result", "n": 2})
    assert [r.get("n") for r in lines(path)] == [None, 2]


def test_other_settings_are_refused_in_one_line_naming_the_setting(tmp_path):
    path = tmp_path / "r.jsonl"
    with results(path).open(resume=True) as f:
        f.write({"type": "result", "n": 1})
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        results(path, window=15).load()
    message = str(caught.value)
    assert "\n" not in message and "window=20" in message and "window=15" in message and message.endswith(FIX)
    assert path.read_bytes() == before


def test_a_part_is_checked_only_when_both_runs_have_it(tmp_path):
    path = tmp_path / "r.jsonl"
    with results(path, parts={"features": {"weights": "aaa"}}).open(resume=True):
        pass
    # a new part may join ...
    assert results(path, parts={"features": {"weights": "aaa"}, "bm25": {}}).load() == []
    # ... but a part measured before must have been measured the same way
    with pytest.raises(ConfigError, match=r"features results made with weights='aaa', this run has weights='bbb'"):
        results(path, parts={"features": {"weights": "bbb"}}).load()


def test_a_line_cut_short_by_a_killed_run_is_dropped_and_redone(tmp_path):
    path = tmp_path / "r.jsonl"
    with results(path).open(resume=True) as f:
        f.write({"type": "result", "n": 1})
        f.write({"type": "result", "n": 2})
    text = path.read_text()
    path.write_text(text[:-8])  # killed while writing the second record
    log = results(path)
    assert log.load() == [{"type": "result", "n": 1}]
    with log.open(resume=True) as f:
        f.write({"type": "result", "n": 2})
    assert [r.get("n") for r in lines(path)] == [None, 1, None, 2]  # every line whole again


def test_a_damaged_line_or_a_foreign_file_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "r.jsonl"
    with results(path).open(resume=True) as f:
        f.write({"type": "result", "n": 1})
    path.write_text(path.read_text().replace('"n": 1', '"n": 1,,'))
    with pytest.raises(ConfigError, match="line 2 is not JSON"):
        results(path).load()
    path.write_text('{"rows": []}\n')
    with pytest.raises(ConfigError, match="not a results file"):
        results(path).load()
    assert path.read_text() == '{"rows": []}\n'
