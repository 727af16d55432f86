"""The one resumable JSONL results file (`rcahook backtest`, `rcahook train --eval`).

A header line per run records the settings, then one record a line. Resuming reads back
the records of earlier runs, but only when every earlier header agrees with this run's
settings: outcomes made under other settings would be mixed silently into the figures.
Each record is written with one write() of a whole line and flushed, so a killed run leaves
at most its last line cut short; that line is dropped on resume and its record redone.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rcahook.errors import ConfigError


class ResultsFile:
    """`header`: what this run writes first; `checked`: the header keys every earlier header
    must equal; `parts`: a header key holding {part: config} (a ranker's weights, a model's
    settings), each compared only when an earlier run has that part too, so a resume may add
    parts. `fix`: what the refusal tells the user to do."""

    def __init__(self, path: Path, header: dict[str, Any], *, checked: Sequence[str], parts: str | None = None,
                 fix: str):
        self.path = path
        self.header = {"type": "header", **header}
        self.checked = tuple(checked)
        self.parts = parts
        self.fix = fix

    def load(self) -> list[dict[str, Any]]:
        """The records of earlier runs (header lines left out), after checking their settings;
        none when there is no file."""
        if not self.path.is_file():
            return []
        records: list[dict[str, Any]] = []
        seen_parts: dict[str, dict[str, Any]] = {}
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            lines.pop()  # a line cut short by a killed run: its record is redone
        headers = 0
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                raise ConfigError(f"{self.path} line {lineno} is not JSON (the file was edited or damaged); "
                                  f"{self.fix}") from None
            if not isinstance(row, dict) or (not headers and row.get("type") != "header"):
                raise ConfigError(f"{self.path} is not a results file of this kind (line {lineno} is no header); "
                                  f"{self.fix}")
            if row.get("type") == "header":
                headers += 1
                self._check(row, lineno)
                if self.parts:
                    seen_parts.update(row.get(self.parts) or {})
            else:
                records.append(row)
        if self.parts:
            for part, config in self.header[self.parts].items():
                if part in seen_parts and seen_parts[part] != config:
                    raise ConfigError(f"{self.path} holds {part} results made with "
                                      f"{_differences(seen_parts[part], config)}; {self.fix}")
        return records

    def _check(self, row: dict[str, Any], lineno: int) -> None:
        for key in ("format", *self.checked):
            if row.get(key) != self.header.get(key):
                raise ConfigError(f"{self.path} line {lineno} was written with {key}={row.get(key)!r}, this run has "
                                  f"{key}={self.header.get(key)!r}; {self.fix}")

    @contextmanager
    def open(self, *, resume: bool) -> Iterator[ResultsWriter]:
        """Append this run's header (after an earlier run's lines when resuming, else to an
        emptied file), then the records written through the yielded writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            _drop_partial_line(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        else:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            writer = ResultsWriter(fd)
            writer.write(self.header)
            yield writer
        finally:
            os.close(fd)


class ResultsWriter:
    def __init__(self, fd: int):
        self._fd = fd

    def write(self, record: dict[str, Any]) -> None:
        """One whole line: built first, then written (unbuffered, so flushed) before returning."""
        line = (json.dumps(record) + "\n").encode()
        while line:  # a regular file takes it in one write(); a short write is finished, not lost
            line = line[os.write(self._fd, line):]


def _drop_partial_line(path: Path) -> None:
    """An interrupted write can leave half a line; appending after it would spoil the next."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'weights=abc…, this run has weights=def…' for the keys that differ."""
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}={old.get(k)!r}" for k in keys) + ", this run has " + \
        ", ".join(f"{k}={new.get(k)!r}" for k in keys)
