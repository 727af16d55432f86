"""Stack-trace parsing and mapping of frames onto repository paths.

`parse_stack_trace` reads whatever was pasted (a log excerpt with colours, timestamps
and several traces) and recognises, line by line:

- Python tracebacks (`File "x.py", line 3, in f`) and pytest's `x.py:3: in f` lines;
- Java/JVM (`at com.foo.Bar.m(Bar.java:12)`, with `Caused by:` chains);
- Go panics (a function line, then an indented `/path/file.go:123 +0x1d`);
- JavaScript: V8/Node (`at fn (/x.js:10:5)`, `at /x.js:1:2`) and Firefox/Safari
  (`fn@http://host/x.js:10:5`);
- native code: gdb `bt` (`#0  0x... in f (a=1) at x.c:12`), AddressSanitizer
  (`#0 0x... in f /path/x.c:12:5`), lldb (`frame #0: ... at x.c:12:3`), valgrind
  (`at 0x...: f (x.c:12)`);
- Rust panics (`panicked at src/x.rs:4:9`) and `stack backtrace:` listings.

Frames come innermost first. Python prints the innermost frame last, so each Python
traceback is reversed. When a trace shows a chain of exceptions, the root cause comes
first: Python prints it first already; Java prints it last (`Caused by:`), so the
segments of a Java chain are reversed, each still innermost first. Separate traces
keep the order in which they were printed.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TextIO
from urllib.parse import urlsplit

# A pasted trace can be a whole log (a 5 MB trace of 50,000 frames was seen, issue 10):
# read at most MAX_TRACE_CHARS of it, keep MAX_FRAMES frames, and carry KEPT_TRACE_CHARS
# of its text into the report and the saved investigation. Each cut keeps both ends: the
# crash site is first in most formats and last in Python's, the entry point the other end.
MAX_TRACE_CHARS = 2_000_000
MAX_FRAMES = 200
OUTER_FRAMES = 50  # of MAX_FRAMES, the outermost (towards the entry point); the rest innermost
KEPT_TRACE_CHARS = 40_000
_CUT = "[rcahook: {n} characters of this stack trace left out here]"
_CUT_LINE = re.compile(r"^\[rcahook: (\d+) characters of this stack trace left out here\]$", re.MULTILINE)


@dataclass(frozen=True)
class Frame:
    path: str | None  # as printed by the runtime, or a repository path after map_frames
    line: int | None
    function: str | None
    raw: str  # the line(s) the frame was read from, colours removed


_MAX_LINE = 10_000
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")

_PY_HEADER = re.compile(r"Traceback \(most recent call last\):")
_PY_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>\S.*?))?\s*$')
# pytest's own traceback style: "src/x.py:12: in func", the innermost "src/x.py:40: KeyError"
_PYTEST_FRAME = re.compile(
    r"^(?P<path>(?:[A-Za-z]:)?[^\s:]+\.py):(?P<line>\d+): (?:in (?P<func>\S+)|[A-Za-z_][\w.]*)\s*$"
)
_PYTEST_SECTION = re.compile(r"^_{3,} .* _{3,}$")

_JAVA_FRAME = re.compile(r"(?:^|\s)at\s+(?P<qual>[^\s(]+)\((?P<loc>[^()]*)\)(?:\s*~?\[[^\]]*\])?\s*$")
_JAVA_LOC = re.compile(r"^(?P<file>[^:]+\.\w+)(?::(?P<line>\d+))?$")
_JAVA_CAUSE = re.compile(r"^\s*Caused by:")
_JAVA_ELIDED = re.compile(r"^\s*\.\.\. \d+ (?:more|common frames omitted)\s*$")

_V8_CALL = re.compile(r"^\s*at\s+(?P<func>.+?)\s+\((?P<path>[^\s()]+?):(?P<line>\d+)(?::\d+)?\)\s*$")
_V8_BARE = re.compile(r"^\s*at\s+(?P<path>[^\s()]+?):(?P<line>\d+)(?::\d+)?\s*$")
_GECKO = re.compile(r"^\s*(?P<func>[^@\s]*)@(?P<path>(?=\S*/)\S+?):(?P<line>\d+)(?::\d+)?\s*$")

_GO_LOCATION = re.compile(r"^\s+(?P<path>\S.*?\.go):(?P<line>\d+)(?: \+0x[0-9a-fA-F]+)?\s*$")

_RUST_PANIC = re.compile(r"panicked at (?:'.*', )?(?P<path>[^\s'][^\s]*?):(?P<line>\d+):\d+:?\s*$")
_RUST_BACKTRACE = re.compile(r"^\s*stack backtrace:\s*$")
_RUST_FUNCTION = re.compile(r"^\s*\d+:\s+(?:0x[0-9a-fA-F]+\s+-\s+)?(?P<func>\S.*?)\s*$")
_RUST_AT = re.compile(r"^\s+at\s+(?P<path>\S.*?):(?P<line>\d+)(?::\d+)?\s*$")
_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")

_NATIVE = re.compile(r"^\s*#\d+\s+(?P<rest>\S.*?)\s*$")
_GDB_SOURCE = re.compile(
    r"^(?:0x[0-9a-fA-F]+\s+in\s+)?(?P<func>[^\s(][^(]*?)\s*\(.*\)\s+at\s+(?P<path>\S+):(?P<line>\d+)$"
)
_GDB_NO_SOURCE = re.compile(r"^0x[0-9a-fA-F]+\s+in\s+(?P<func>[^\s(][^(]*?)\s*\(.*\)(?:\s+from\s+\S+)?$")
_ASAN_SOURCE = re.compile(r"^0x[0-9a-fA-F]+\s+in\s+(?P<func>.+?)\s+(?P<path>\S+?):(?P<line>\d+)(?::\d+)?$")
_ASAN_MODULE = re.compile(
    r"^0x[0-9a-fA-F]+\s+(?:in\s+(?P<func>.+?)\s+)?\([^()]*\+0x[0-9a-fA-F]+\)(?:\s+\(BuildId: \w+\))?$"
)
_LLDB = re.compile(
    r"frame #\d+: 0x[0-9a-fA-F]+ (?:\S+`)?(?P<func>.+?)(?: \+ \d+)?(?: at (?P<path>\S+?):(?P<line>\d+)(?::\d+)?)?\s*$"
)
_VALGRIND = re.compile(
    r"^==\d+==\s+(?:at|by) 0x[0-9A-Fa-f]+: (?P<func>.+?) "
    r"\((?:(?P<path>[^():]+):(?P<line>\d+)|in [^)]*)\)\s*$"
)

# Printed in place of a file by runtimes for code that has none: <stdin>, <frozen os>,
# <anonymous>, node:internal/..., native.
_NO_FILE_PREFIXES = ("<", "node:")
_NO_FILE_NAMES = ("native", "[native code]")


def parse_stack_trace(text: str) -> list[Frame]:
    """Every frame found in `text`, innermost first (see the module docstring)."""
    parser = _Parser()
    for line in text.splitlines():
        parser.feed(_ANSI.sub("", line).rstrip())
    return parser.finish()


class _Parser:
    def __init__(self) -> None:
        self.out: list[Frame] = []
        self.python: list[Frame] = []  # current traceback, outermost first as printed
        self.java_chain: list[list[Frame]] = []  # finished segments, outermost exception first
        self.java_segment: list[Frame] | None = None
        self.java_new_segment = True
        self.java_cause = False
        self.rust_backtrace = False
        self.rust_pending: tuple[str, str] | None = None  # (function, raw line)
        self.previous = ""  # last non-blank line, for Go's function-then-location pairs

    def finish(self) -> list[Frame]:
        self._flush_rust()
        self._flush_python()
        self._flush_java()
        return self.out

    def feed(self, line: str) -> None:
        # Minified bundles and data dumps produce huge lines that are never frames and
        # would only make the patterns backtrack.
        if line.strip() and len(line) <= _MAX_LINE:
            self._feed(line)
            self.previous = line

    def _feed(self, line: str) -> None:
        if self.rust_backtrace and self._rust_line(line):
            return
        if _PY_HEADER.search(line) or _PYTEST_SECTION.match(line):
            self._flush_python()
            return
        match = _PY_FRAME.search(line) or _PYTEST_FRAME.match(line)
        if match:
            self._add("python", _frame(match, line))
            return
        match = _NATIVE.match(line)
        if match and self._native(match.group("rest"), line):
            return
        for pattern in (_LLDB, _VALGRIND):
            match = pattern.search(line)
            if match:
                self._add("native", _frame(match, line, function=_strip_args(match.group("func"))))
                return
        match = _RUST_PANIC.search(line)
        if match:
            self._add("rust", _frame(match, line))
            return
        if _RUST_BACKTRACE.match(line):
            self.rust_backtrace = True
            return
        match = _GO_LOCATION.match(line)
        if match:
            raw = f"{self.previous}\n{line}" if self.previous else line
            self._add("go", _frame(match, raw, function=_go_function(self.previous)))
            return
        match = _JAVA_FRAME.search(line)
        if match:
            self._add("java", _java_frame(match, line))
            return
        match = _V8_CALL.search(line) or _V8_BARE.search(line) or _GECKO.match(line)
        if match:
            self._add("js", _frame(match, line))
            return
        if _JAVA_CAUSE.match(line):
            self.java_cause = True
            self.java_new_segment = True
        elif not _JAVA_ELIDED.match(line):
            self.java_new_segment = True

    def _native(self, rest: str, raw: str) -> bool:
        match = _GDB_SOURCE.match(rest) or _ASAN_SOURCE.match(rest)
        if match:
            self._add("native", _frame(match, raw))
            return True
        match = _GDB_NO_SOURCE.match(rest) or _ASAN_MODULE.match(rest)
        if match and match.group("func") and match.group("func") != "??":
            self._add("native", Frame(None, None, match.group("func"), raw))
            return True
        return False

    def _rust_line(self, line: str) -> bool:
        """Consume a line of a Rust `stack backtrace:` listing; False once it has ended."""
        at = _RUST_AT.match(line)
        if at and self.rust_pending:
            function, first = self.rust_pending
            self.rust_pending = None
            self._add("rust", _frame(at, f"{first}\n{line}", function=function))
            return True
        match = _RUST_FUNCTION.match(line)
        if match:
            self._flush_rust()
            self.rust_pending = (_RUST_HASH.sub("", match.group("func")), line)
            return True
        self._flush_rust()
        self.rust_backtrace = False
        return False

    def _flush_rust(self) -> None:
        if self.rust_pending:
            function, raw = self.rust_pending
            self.rust_pending = None
            self._add("rust", Frame(None, None, function, raw))

    def _add(self, kind: str, frame: Frame) -> None:
        if kind != "python":
            self._flush_python()
        if kind != "java":
            self._flush_java()
        if kind == "python":
            self.python.append(frame)
        elif kind == "java":
            self._add_java(frame)
        else:
            self.out.append(frame)

    def _add_java(self, frame: Frame) -> None:
        if self.java_new_segment or self.java_segment is None:
            if not self.java_cause:
                self._flush_java()  # an unrelated trace: close the previous chain
            elif self.java_segment:
                self.java_chain.append(self.java_segment)
            self.java_segment = []
            self.java_new_segment = self.java_cause = False
        self.java_segment.append(frame)

    def _flush_python(self) -> None:
        self.out.extend(reversed(self.python))
        self.python = []

    def _flush_java(self) -> None:
        segments = self.java_chain + ([self.java_segment] if self.java_segment else [])
        for segment in reversed(segments):  # root cause first
            self.out.extend(segment)
        self.java_chain = []
        self.java_segment = None
        self.java_cause = False


def _frame(match: re.Match[str], raw: str, *, function: str | None = None) -> Frame:
    groups = match.groupdict()
    path = groups.get("path")
    if path and (path.startswith(_NO_FILE_PREFIXES) or path in _NO_FILE_NAMES):
        path = None
    line = groups.get("line")
    if function is None:
        function = groups.get("func") or None
    return Frame(path or None, int(line) if line else None, function, raw)


def _strip_args(function: str) -> str:
    """`main(argc=1, argv=0x7ff)` -> `main`; `Foo::bar(int) const` -> `Foo::bar`."""
    head, paren, _ = function.partition("(")
    return head.strip() if paren and head.strip() else function.strip()


def _go_function(line: str) -> str | None:
    """The function on the line above a Go location: `main.(*T).m(0xc0, {0x1, 0x2})` -> `main.(*T).m`."""
    text = line.strip()
    if not text or _GO_LOCATION.match(line) or text.startswith("goroutine "):
        return None
    text = re.sub(r"^created by ", "", text)
    text = re.sub(r" in goroutine \d+$", "", text)
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                text = text[:i]
                break
    return text or None


def _java_frame(match: re.Match[str], raw: str) -> Frame:
    # "java.base/java.lang.Thread.run" and "app//com.foo.Bar.m" carry a module prefix.
    qualified = match.group("qual").rsplit("/", 1)[-1]
    location = _JAVA_LOC.match(match.group("loc").strip())
    if location is None:  # "Native Method", "Unknown Source"
        return Frame(None, None, qualified, raw)
    # The package gives the directory: com.foo.Bar$Inner.run in Bar.java -> com/foo/Bar.java
    package = [part for part in qualified.split(".")[:-2] if part]
    path = "/".join([*package, location.group("file")])
    line = location.group("line")
    return Frame(path, int(line) if line else None, qualified, raw)


# --- caps ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trace:
    """A stack trace as rcahook keeps it: at most MAX_FRAMES frames, a bounded text."""

    frames: list[Frame]  # kept, innermost first
    found: int  # frames recognised in the text read
    text: str  # the text the report and the saved investigation carry
    chars_left_out: int  # of the input: not read, or not kept in `text`

    @property
    def frames_dropped(self) -> int:
        return self.found - len(self.frames)

    @property
    def note(self) -> str | None:
        parts = []
        if self.frames_dropped:
            parts.append(f"{self.found:,} frames; the {len(self.frames):,} innermost and outermost are kept, "
                         f"{self.frames_dropped:,} dropped from the middle")
        if self.chars_left_out:
            parts.append(f"{self.chars_left_out:,} characters of its middle left out of the report and the "
                         "saved investigation")
        return "stack trace: " + "; ".join(parts) if parts else None


def _join_cut(head: str, tail: str, left_out: int) -> str:
    """head + a line saying how much was left out + tail, each cut at a line boundary."""
    if "\n" in head:
        cut = len(head) - head.rfind("\n") - 1
        head, left_out = head[: len(head) - cut], left_out + cut
    if "\n" in tail:
        cut = tail.find("\n") + 1
        tail, left_out = tail[cut:], left_out + cut
    sep = "" if not head or head.endswith("\n") else "\n"
    return f"{head}{sep}{_CUT.format(n=left_out)}\n{tail}"


def _half(limit: int) -> int:
    """Each end's share of `limit`, leaving room for the cut line (so a cut text fits)."""
    return max((limit - len(_CUT) - 24) // 2, 0)


def cut_middle(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its first and last halves with a line
    in between saying how many characters were left out (counting earlier cuts there)."""
    if len(text) <= limit:
        return text
    half = _half(limit)
    middle = text[half: len(text) - half]
    earlier = sum(int(m.group(1)) - len(m.group(0)) - 1 for m in _CUT_LINE.finditer(middle))
    return _join_cut(text[:half], text[len(text) - half:], len(middle) + max(earlier, 0))


def read_capped(stream: TextIO, limit: int = MAX_TRACE_CHARS) -> str:
    """Read a trace from a file or stdin, holding at most `limit` characters: past that,
    the first and the last halves, with the cut said in the text (see cut_middle)."""
    first = stream.read(limit + 1)
    if len(first) <= limit:
        return first
    half = _half(limit)
    head, tail, total = first[:half], first[-half:], len(first)
    while chunk := stream.read(1 << 20):
        total += len(chunk)
        tail = (tail + chunk)[-half:]
    return _join_cut(head, tail, total - len(head) - len(tail))


def left_out(text: str) -> int:
    """Characters the cut lines in `text` say were left out."""
    return sum(int(m.group(1)) for m in _CUT_LINE.finditer(text))


def parse_capped(text: str, *, max_frames: int = MAX_FRAMES, kept_chars: int = KEPT_TRACE_CHARS) -> Trace:
    """parse_stack_trace within the caps: the innermost and the outermost frames, and a
    text short enough to save with every investigation."""
    text = cut_middle(text, MAX_TRACE_CHARS)
    frames = parse_stack_trace(text)
    found = len(frames)
    if found > max_frames:
        outer = min(OUTER_FRAMES, max_frames // 2)
        frames = frames[: max_frames - outer] + frames[found - outer:]
    kept = cut_middle(text, kept_chars)
    return Trace(frames, found, kept, left_out(kept))


# --- mapping frames onto the repository ---------------------------------------------

# Languages whose source files need not sit in directories named after their package,
# so a file name alone may identify the file when it is unique in the repository.
_BASENAME_FALLBACK = (".java", ".kt", ".kts", ".scala", ".groovy")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_WINDOWS = re.compile(r"^[A-Za-z]:[\\/]")


def map_frames(frames: Sequence[Frame], repo_paths: Iterable[str]) -> list[Frame]:
    """The frames that lie in the repository, with `path` rewritten to the repository path.

    A frame's path matches the repository path sharing the longest run of trailing path
    components with it (`/home/ci/build/src/ip/ipaddress.c` -> `ip/ipaddress.c`,
    `site-packages/mesonbuild/mtest.py` -> `mesonbuild/mtest.py`). Accepted when
    the repository path is wholly a suffix of the frame's path or the frame's path
    wholly a suffix of it, or at least two components agree; a JVM file may also match
    by file name alone when only one file has that name. When several repository
    paths fit equally well, the frame is dropped rather than guessed. Frames without a
    path, or matching nothing, are left out; order is kept.
    """
    index = RepoPathIndex(repo_paths)
    mapped = []
    for frame in frames:
        path = index.resolve(frame.path) if frame.path else None
        if path is not None:
            mapped.append(replace(frame, path=path))
    return mapped


class RepoPathIndex:
    """Repository paths by file name, for resolving many frames against one tree."""

    def __init__(self, repo_paths: Iterable[str]):
        self._by_name: dict[str, list[tuple[str, list[str]]]] = {}
        self._by_folded_name: dict[str, list[tuple[str, list[str]]]] = {}
        for path in repo_paths:
            parts = [p for p in path.strip("/").split("/") if p]
            if not parts:
                continue
            self._by_name.setdefault(parts[-1], []).append((path, parts))
            folded = [p.lower() for p in parts]
            self._by_folded_name.setdefault(folded[-1], []).append((path, folded))

    def resolve(self, frame_path: str) -> str | None:
        parts, fold_case = _frame_parts(frame_path)
        if not parts:
            return None
        by_name = self._by_folded_name if fold_case else self._by_name
        candidates = by_name.get(parts[-1], ())
        best = 0
        tied: list[tuple[str, list[str]]] = []
        for path, repo_parts in candidates:
            shared = _common_suffix(parts, repo_parts)
            if shared > best:
                best, tied = shared, [(path, repo_parts)]
            elif shared == best:
                tied.append((path, repo_parts))
        whole = [(path, rp) for path, rp in tied if len(rp) == best]
        if whole:  # the repository path is entirely a suffix of the frame's path
            return whole[0][0]
        if len(tied) != 1:
            return None
        if best == len(parts) or best >= 2:
            return tied[0][0]
        if parts[-1].lower().endswith(_BASENAME_FALLBACK):
            return tied[0][0]
        return None


def _frame_parts(path: str) -> tuple[list[str], bool]:
    """Path components of a printed path, and whether to compare them ignoring case."""
    text = path.strip()
    if _URL.match(text):
        text = urlsplit(text).path
    fold_case = bool(_WINDOWS.match(text)) or "\\" in text
    text = text.replace("\\", "/")
    if _WINDOWS.match(text):
        text = text[2:]
    parts = [p for p in text.split("/") if p not in ("", ".", "..")]
    if fold_case:
        parts = [p.lower() for p in parts]
    return parts, fold_case


def _common_suffix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n
