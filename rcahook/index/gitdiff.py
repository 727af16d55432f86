"""Commits' file changes read from one `git diff-tree --stdin` stream instead of libgit2.

Indexing a history is mostly computing diffs. libgit2 rebuilds each tree and patch through
pygit2 at 2-10 ms a commit; git's own diff machinery streams the same patches at about
0.2 ms a commit (iproute2, meson and the 1M-commit synthetic monorepo). The index asks git for
the patches of a batch of commits at once, each against the parent it names, and parses
them here into the same FileChange records gitrepo builds from libgit2.

git runs on repository content, which is untrusted: only plumbing (`diff-tree`, which never
runs a textconv filter or an external diff unless asked), with both turned off explicitly
anyway, replace refs ignored, hooks and fsmonitor off, and never on a partial clone (the
git here fetches a promisor's missing blobs, which libgit2 never does: gitrepo keeps those
on libgit2). Anything unexpected (git missing, an error, output this parser does not
recognise) returns None and the caller computes those commits with libgit2, so a wrong
parse can never reach the index.
"""
from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DIFF_TREE = ("diff-tree", "--stdin", "--always", "-r", "-p", "-U0", "-M", "--raw", "--full-index", "-z",
             "--no-textconv", "--no-ext-diff", "--no-indent-heuristic", "--no-color", "--ignore-submodules=none")
# Settings a repository's own config could set that change what diff-tree prints or runs.
_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.quotePath=true",
           "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false", "-c", "diff.relative=false",
           "-c", "diff.renameLimit=1000", "-c", "core.bigFileThreshold=2g")
_HUNK = re.compile(rb"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_HEADER_LINES = (b"old mode ", b"new mode ", b"deleted file mode ", b"new file mode ", b"copy from ", b"copy to ",
                 b"rename from ", b"rename to ", b"similarity index ", b"dissimilarity index ", b"index ",
                 b"--- ", b"+++ ")
_ZERO = "0" * 40
_SIDE_LINES = {b"-": re.compile(rb"(?:-[^\n]*\n)*"), b"+": re.compile(rb"(?:\+[^\n]*\n)*")}


class ParseError(Exception):
    """diff-tree printed something this parser does not expect."""


@dataclass
class FileDiff:
    raw_path: bytes  # the new path (the old one for a deletion), as git stores it
    raw_old_path: bytes | None  # renames and copies
    status: str
    old_blob: str | None
    new_blob: str | None
    binary: bool = False
    hunks: tuple[tuple[int, int, int, int], ...] = ()
    added: tuple[bytes, ...] = ()  # the patch's "+" lines, prefix included
    removed: tuple[bytes, ...] = ()


class _Incomplete(Exception):
    """The commit's output goes on past what has been read so far."""


class _Reader:
    """A position in diff-tree's output read so far; `eof` once git has closed it. Reading
    past the end of what is there raises _Incomplete until then."""

    def __init__(self, buf: bytes, pos: int = 0, eof: bool = True):
        self.buf = buf
        self.pos = pos
        self.eof = eof

    def _end(self, sep: bytes) -> int:
        end = self.buf.find(sep, self.pos)
        if end < 0:
            if not self.eof:
                raise _Incomplete
            end = len(self.buf)
        return end

    def field(self) -> bytes:
        """Up to the next NUL."""
        end = self._end(b"\0")
        if end == len(self.buf):
            raise ParseError("unterminated field")
        out = self.buf[self.pos:end]
        self.pos = end + 1
        return out

    def line(self) -> bytes:
        end = self._end(b"\n")
        out = self.buf[self.pos:end]
        self.pos = end + 1
        return out

    def lines(self, n: int, head: bytes) -> list[bytes]:
        """The next n lines, each starting with `head` (a hunk's "-" or "+" lines)."""
        # one regex match over the run of such lines, then one split: no Python step per line
        end = _SIDE_LINES[head].match(self.buf, self.pos).end()  # type: ignore[union-attr]
        out = self.buf[self.pos:end].split(b"\n", n)
        if len(out) > n:  # n whole lines (and whatever of the run is past them)
            self.pos += sum(map(len, out[:n])) + n
            del out[n:]
            return out
        return self._lines_one_by_one(n, head)  # short: the output is not all in, or it ends early

    def _lines_one_by_one(self, n: int, head: bytes) -> list[bytes]:
        buf, pos, out = self.buf, self.pos, []
        for _ in range(n):
            end = buf.find(b"\n", pos)
            if end < 0:
                if not self.eof:
                    raise _Incomplete
                end = len(buf)
            if buf[pos:pos + 1] != head:
                raise ParseError("hunk shorter than its header says")
            out.append(buf[pos:end])
            pos = end + 1
        self.pos = pos
        return out

    def at(self, prefix: bytes | tuple[bytes, ...]) -> bool:
        if self.buf.startswith(prefix, self.pos):
            return True
        longest = max(map(len, prefix)) if isinstance(prefix, tuple) else len(prefix)
        if not self.eof and len(self.buf) - self.pos < longest:
            raise _Incomplete  # too little read to tell
        return False


def _blob(hexsha: bytes) -> str | None:
    s = hexsha.decode("ascii")
    if len(s) != 40:
        raise ParseError(f"abbreviated blob id {s!r}")
    return None if s == _ZERO else s


def _raw_entries(r: _Reader) -> list[FileDiff]:
    entries: list[FileDiff] = []
    while r.at(b":"):
        meta = r.field()[1:].split(b" ")
        if len(meta) != 5 or not meta[4]:
            raise ParseError(f"raw line {meta!r}")
        status = meta[4][:1].decode("ascii")
        first = r.field()
        if status in ("R", "C"):
            entries.append(FileDiff(r.field(), first, status, _blob(meta[2]), _blob(meta[3])))
        elif status == "T":  # a file that became a symlink (or back): git's patch, like libgit2,
            # shows it as the old one deleted, then the new one created
            entries.append(FileDiff(first, None, "D", _blob(meta[2]), None))
            entries.append(FileDiff(first, None, "A", None, _blob(meta[3])))
        else:
            entries.append(FileDiff(first, None, status, _blob(meta[2]), _blob(meta[3])))
    return entries


def _patch(r: _Reader, entry: FileDiff) -> None:
    if not r.at(b"diff --git "):
        raise ParseError("expected a diff --git header")
    r.line()
    while r.at(_HEADER_LINES):
        r.line()
    if r.at(b"Binary files "):
        r.line()
        entry.binary = True
        return
    hunks: list[tuple[int, int, int, int]] = []
    added: list[bytes] = []
    removed: list[bytes] = []
    while r.at(b"@@ "):
        m = _HUNK.match(r.line())
        if m is None:
            raise ParseError("malformed hunk header")
        a, b, c, d = m.groups()
        old_lines, new_lines = int(b) if b is not None else 1, int(d) if d is not None else 1
        hunks.append((int(a), old_lines, int(c), new_lines))
        # -U0: no context lines; a change's removed lines, then its added ones, each side
        # followed by "\ No newline at end of file" where it ends the file without one
        for count, head, side in ((old_lines, b"-", removed), (new_lines, b"+", added)):
            if count:
                side += r.lines(count, head)
                if r.at(b"\\"):
                    r.line()
    entry.hunks, entry.added, entry.removed = tuple(hunks), tuple(added), tuple(removed)


def _commit(r: _Reader, sha: str) -> list[FileDiff]:
    if r.field() != sha.encode("ascii"):
        raise ParseError(f"expected commit {sha}")
    entries = _raw_entries(r)
    if entries:
        if r.field() != b"":
            raise ParseError("expected the patch separator")
        for entry in entries:
            _patch(r, entry)
    return entries


def parse(buf: bytes, shas: Sequence[str]) -> dict[str, list[FileDiff]]:
    """diff-tree's whole output for `shas`, in that order (one `sha parent` line each was asked)."""
    r = _Reader(buf)
    out = {sha: _commit(r, sha) for sha in shas}
    if r.pos < len(r.buf):
        raise ParseError("trailing output")
    return out


READ = 1 << 20


def _parsed(stdout: IO[bytes], shas: Sequence[str]) -> Iterator[tuple[str, list[FileDiff]]]:
    """Each commit as soon as its output is in: git computes the next ones meanwhile."""
    buf, pos, eof = b"", 0, False
    i = 0
    while i < len(shas):
        r = _Reader(buf, pos, eof)
        try:
            diffs = _commit(r, shas[i])
        except _Incomplete:
            if eof:  # cannot happen: a reader at eof never raises it
                raise ParseError("output ends early") from None
            # At least as much again as this commit's output so far (a pipe hands over 64 KiB
            # at a time): a commit is parsed again from its start after each read, so its
            # reads must grow geometrically or a huge commit costs its size squared.
            want, got = max(READ, len(buf) - pos), []
            while want > 0:
                data = stdout.read1(want)  # type: ignore[attr-defined]
                if not data:
                    eof = True
                    break
                got.append(data)
                want -= len(data)
            buf, pos = buf[pos:] + b"".join(got), 0
            continue
        pos = r.pos
        i += 1
        yield shas[i - 1], diffs
    if pos < len(buf) or stdout.read(1):
        raise ParseError("trailing output")


def read(git_dir: Path, pairs: Sequence[tuple[str, str]], env: dict[str, str]) -> dict[str, list[FileDiff]] | None:
    """The file changes of each (commit, parent) pair, or None when git cannot give them
    (not installed, an error such as a missing object, unexpected output): the caller falls
    back to libgit2 for these commits. Parsed as git writes them, so that git's diffing and
    this parse run side by side."""
    if not pairs:
        return {}
    env = {**env, "GIT_NO_REPLACE_OBJECTS": "1", "GIT_NO_LAZY_FETCH": "1", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.Popen(["git", *_CONFIG, f"--git-dir={git_dir}", *DIFF_TREE], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            for i in range(0, len(pairs), 1000):
                stdin.write("".join(f"{sha} {parent}\n" for sha, parent in pairs[i:i + 1000]).encode("ascii"))
            stdin.close()
        except OSError:  # git stopped reading (an error): its exit status says so
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out: dict[str, list[FileDiff]] | None
    try:
        out = dict(_parsed(proc.stdout, [sha for sha, _ in pairs]))
    except (ParseError, UnicodeDecodeError, ValueError):
        out = None
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            out = None  # only a run git finished cleanly is used, every commit of it
        writer.join()
    return out
