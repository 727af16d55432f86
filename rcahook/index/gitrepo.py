"""All of rcahook's git access. The only module that imports pygit2.

Everything it returns is rcahook's own frozen dataclasses or plain values, so callers
never hold pygit2 objects (which can't cross process boundaries or outlive the repo), and
what it raises is rcahook's own errors, not pygit2's (which can't be pickled either).

Objects are only ever read from the local object database: libgit2 has no lazy fetch, so
a partial clone's missing blobs are reported as unavailable, never fetched from its
promisor remote.

The scratch worktrees of `rcahook bisect` and `verify` (and their reverts) go through the
git command line instead, with inherited GIT_* variables scrubbed and hooks off (run_git).
"""
from __future__ import annotations

import heapq
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pygit2
from pygit2.enums import DiffFind, ObjectType, SortMode

from rcahook.errors import (
    EmptyRepositoryError,
    GitFailedError,
    NotARepositoryError,
    RepositoryReadError,
    UnknownRevisionError,
)
from rcahook.index import gitdiff

_Obj = TypeVar("_Obj", pygit2.Commit, pygit2.Tree, pygit2.Blob)

# libgit2 caches only trees of at most 4 KiB: a monorepo directory of a few hundred entries
# is bigger, and every diff then rebuilds it from its delta chain. On the 1M-commit synthetic
# monorepo (bench/gen_monorepo.py) a commit's tree diff took 0.43 s, 0.07 s with this.
pygit2.settings.cache_object_limit(ObjectType.TREE, 1 << 20)

# Identifiers a diff adds or removes: what the code talks about, beyond the message.
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,}")
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.M)
_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)\s*:\s*(.*)$")
# Diff lines that are not code: blank, or a comment in the file's language. `#` starts a
# comment in scripts and build files, but a preprocessor line in C.
_HASH_COMMENT_EXT = (b".py", b".pyi", b".sh", b".bash", b".rb", b".pl", b".pm", b".yaml", b".yml", b".toml",
                     b".cfg", b".ini", b".conf", b".cmake", b".mk", b".build", b".txt", b".r", b".jl")
# A patch line (its "+" or "-", then the text) whose text, stripped as bytes.strip() strips,
# is neither empty, nor "*", nor starts with a comment prefix (nor "#" in languages of #-comments)
_WS = rb"[ \t\r\x0b\x0c]"
_TEXT = rb"[^ \t\r\x0b\x0c\n]"  # a character strip() keeps
# ("* " and "-- " survive the strip only when text follows them)
_NOT_COMMENT = (rb"(?!//|/\*|\* [^\n]*" + _TEXT + rb"|\*/|-- [^\n]*" + _TEXT + rb"|<!--|\"\"\"|'''|;;|\*"
                + _WS + rb"*$")
_CODE_LINE = re.compile(rb"^." + _WS + rb"*" + _NOT_COMMENT + rb")" + _TEXT, re.M)
_CODE_LINE_HASH = re.compile(rb"^." + _WS + rb"*" + _NOT_COMMENT + rb"|#)" + _TEXT, re.M)
MAX_IDENTS = 4000  # per side; a generated file can add tens of thousands


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    time: int  # seconds since the epoch
    offset: int  # minutes east of UTC


@dataclass(frozen=True)
class Hunk:
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int


@dataclass(frozen=True)
class FileChange:
    path: str
    old_path: str | None  # set for renames and copies
    status: str  # A D M R C T
    added: int
    deleted: int
    binary: bool
    hunks: tuple[Hunk, ...]
    old_blob: str | None
    new_blob: str | None
    # a blob is not in this clone (a partial clone, or a lost object): the path and status
    # are known, the lines and hunks are not
    unavailable: bool = False


@dataclass(frozen=True)
class CommitRecord:
    sha: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    subject: str
    body: str
    trailers: tuple[tuple[str, str], ...]
    files: tuple[FileChange, ...]  # against the first parent; empty for merges
    idents_added: tuple[str, ...]
    idents_removed: tuple[str, ...]
    shallow: bool = False  # a parent is missing: history beyond it was not fetched
    code_lines: int = 0  # added + deleted lines that are neither blank nor comments


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob: str
    size: int | None  # None: the blob is not in this clone (partial clone)


def decode_text(raw: bytes, encoding: str | None = None) -> str:
    """Commit messages are bytes in whatever encoding the author's tools used."""
    for enc in (encoding, "utf-8"):
        if enc:
            try:
                return raw.decode(enc)
            except (LookupError, UnicodeDecodeError):
                pass
    return raw.decode("latin-1")


def decode_path(raw: bytes) -> str:
    # Non-UTF-8 paths stay readable and unique; SQLite can't hold lone surrogates.
    return raw.decode("utf-8", "backslashreplace")


def split_message(message: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """Subject (first paragraph, joined as git does), body, and the trailer block."""
    text = message.replace("\r\n", "\n").strip("\n")
    paragraphs = re.split(r"\n[ \t]*\n", text, maxsplit=1)
    subject = " ".join(line.strip() for line in paragraphs[0].splitlines()).strip()
    body = paragraphs[1].strip("\n") if len(paragraphs) > 1 else ""
    return subject, body, parse_trailers(body)


def parse_trailers(body: str) -> tuple[tuple[str, str], ...]:
    if not body:
        return ()
    last = re.split(r"\n[ \t]*\n", body.strip())[-1]
    trailers: list[tuple[str, str]] = []
    for line in last.splitlines():
        if line[:1] in (" ", "\t") and trailers:  # continuation line
            key, value = trailers[-1]
            trailers[-1] = (key, f"{value} {line.strip()}")
            continue
        m = _TRAILER.match(line)
        if not m:
            return ()  # git only treats an all-trailer last paragraph as trailers
        trailers.append((m.group(1), m.group(2).strip()))
    return tuple(trailers)


def _signature(sig: pygit2.Signature) -> Signature:
    return Signature(
        name=decode_text(sig.raw_name), email=decode_text(sig.raw_email),
        time=sig.time, offset=sig.offset,
    )


def _idents(lines: Sequence[bytes]) -> tuple[str, ...]:
    every = dict.fromkeys(_IDENT.findall(b"\n".join(lines)))  # one regex pass: lines never share an identifier
    if len(every) < MAX_IDENTS:
        # ASCII by the pattern: decoded in one piece, not one by one
        return tuple(b" ".join(every).decode("ascii").split(" ")) if every else ()
    seen: dict[bytes, None] = {}  # over the cap: the first ones, as the per-line walk keeps them
    for line in lines:
        for m in _IDENT.findall(line):
            seen.setdefault(m, None)
            if len(seen) >= MAX_IDENTS:
                break
    return tuple(i.decode("ascii") for i in seen)


def _code_lines(raw_path: bytes, lines: Sequence[bytes]) -> int:
    """How many of the patch lines (each with its "+" or "-") hold code: not blank, not a
    comment's start or a line of a block comment's stars."""
    name = raw_path.rsplit(b"/", 1)[-1].lower()
    hash_comments = name.endswith(_HASH_COMMENT_EXT) or name in (b"makefile", b"meson.build", b"dockerfile")
    # one regex pass over the lines joined (a line never holds a newline), not a step per line
    return len((_CODE_LINE_HASH if hash_comments else _CODE_LINE).findall(b"\n".join(lines)))


def _blob_id(file: pygit2.DiffFile) -> str | None:
    oid = str(file.id)
    return None if oid == "0" * 40 else oid


def _unavailable_change(delta: pygit2.DiffDelta) -> FileChange:
    status = delta.status_char()
    return FileChange(
        path=decode_path(delta.new_file.raw_path),
        old_path=decode_path(delta.old_file.raw_path) if status in ("R", "C") else None,
        status=status, added=0, deleted=0, binary=False, hunks=(),
        old_blob=_blob_id(delta.old_file), new_blob=_blob_id(delta.new_file), unavailable=True,
    )


def _file_change(patch: pygit2.Patch) -> tuple[FileChange, list[bytes], list[bytes]]:
    delta = patch.delta
    status = delta.status_char()
    old_path = decode_path(delta.old_file.raw_path) if status in ("R", "C") else None
    hunks: tuple[Hunk, ...] = ()
    added_lines: list[bytes] = []
    removed_lines: list[bytes] = []
    if delta.is_binary:
        added = deleted = 0
    else:
        _, added, deleted = patch.line_stats
        data = patch.data
        hunks = tuple(
            Hunk(int(a), int(b) if b else 1, int(c), int(d) if d else 1)
            for a, b, c, d in _HUNK.findall(data)
        )
        for line in data.split(b"\n"):
            head = line[:1]
            if head == b"+" and not line.startswith(b"+++ "):
                added_lines.append(line)
            elif head == b"-" and not line.startswith(b"--- "):
                removed_lines.append(line)
    change = FileChange(
        path=decode_path(delta.new_file.raw_path), old_path=old_path, status=status,
        added=added, deleted=deleted, binary=bool(delta.is_binary), hunks=hunks,
        old_blob=_blob_id(delta.old_file), new_blob=_blob_id(delta.new_file),
    )
    return change, added_lines, removed_lines


def _patches(diff: pygit2.Diff) -> Iterator[tuple[pygit2.Patch | None, pygit2.DiffDelta | None]]:
    """(patch, None) for each file of the diff, or (None, delta) for a file whose patch needs a
    blob this clone does not have."""
    done = 0
    patches = iter(diff)  # iterating is faster than indexing (~7% of a commit's cost)
    while True:
        try:
            patch = next(patches)
        except StopIteration:
            return
        except KeyError:  # pygit2.NotFoundError: a missing blob (partial clone)
            break
        yield patch, None
        done += 1
    # from the first missing blob on, by index: an index can step over the ones that fail
    deltas = list(diff.deltas)  # no blob content needed for these
    for i in range(done, len(deltas)):
        try:
            patch = diff[i]
        except KeyError:
            yield None, deltas[i]
        else:
            yield patch, None


def _raw_parents(raw: bytes) -> tuple[str, ...]:
    """Parent shas as written in a commit object's header."""
    header = raw.split(b"\n\n", 1)[0]
    return tuple(line[7:].decode("ascii") for line in header.split(b"\n") if line.startswith(b"parent "))


class Repo:
    """A git repository (bare or not), opened by discovering upwards from a path."""

    def __init__(self, path: str | os.PathLike[str] = "."):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise NotARepositoryError(
                f"{path}: no such directory; pass --repo with the path of a git repository")
        found = pygit2.discover_repository(path)
        if found is None:
            raise NotARepositoryError(
                f"{os.path.abspath(path)} is not a git repository; run rcahook inside one or pass --repo PATH")
        try:
            self._repo = pygit2.Repository(found)
        except pygit2.GitError as e:
            raise NotARepositoryError(f"{found}: cannot open this git repository ({e}); check it with "
                                      "`git status` there") from None
        self.path = found
        self._shallow: frozenset[str] | None = None
        self._history: pygit2.Repository | None = None
        self._git_diffs: bool | None = None

    @property
    def git_dir(self) -> Path:
        """This worktree's git directory (a linked worktree's own one under .git/worktrees/)."""
        return Path(self._repo.path)

    @property
    def common_dir(self) -> Path:
        """git's common directory (`git rev-parse --git-common-dir`): the main repository's git
        directory, which every linked worktree shares. rcahook keeps its data there, so one
        index and one feedback store serve all worktrees."""
        git_dir = self.git_dir
        try:
            # the file `git worktree add` writes; libgit2 reads the same one (pygit2 doesn't expose it)
            text = (git_dir / "commondir").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return git_dir
        common = Path(os.path.normpath(git_dir / text))  # relative to git_dir unless absolute
        # only where git puts a linked worktree (<common dir>/worktrees/<name>), so that a file
        # planted in a repository cannot send rcahook's data anywhere else
        try:
            linked = git_dir.resolve().parent == (common / "worktrees").resolve()
        except OSError:
            linked = False
        if text and linked and (common / "objects").is_dir() and (common / "HEAD").is_file():
            return common
        return git_dir

    def _history_repo(self) -> pygit2.Repository:
        """The repository to walk history in: libgit2 looks for a shallow clone's `shallow` file
        in a linked worktree's own git directory, where git never writes it, and then walks into
        the parents the clone does not have; the common directory's repository has it."""
        if self._history is None:
            self._history = self._repo
            common = self.common_dir
            if common != self.git_dir and (common / "shallow").is_file():
                self._history = pygit2.Repository(str(common))
        return self._history

    @property
    def workdir(self) -> Path | None:
        return Path(self._repo.workdir) if self._repo.workdir else None

    def slug(self) -> str:
        """A short name for file names: the work tree's directory, or the bare directory's."""
        base = self.workdir if self.workdir is not None else self.git_dir
        name = base.name.removesuffix(".git")
        if name in ("", "repo", "git"):  # mirrors laid out as <name>/repo
            name = base.parent.name.removesuffix(".git")
        return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "repository"

    @property
    def is_shallow(self) -> bool:
        return self._repo.is_shallow

    def resolve(self, rev: str) -> str:
        """Full sha of the commit `rev` names; UnknownRevisionError otherwise."""
        try:
            obj = self._repo.revparse_single(rev)
            return str(obj.peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as e:
            if rev == "HEAD" and self._repo.head_is_unborn:
                raise EmptyRepositoryError(
                    f"{self.path}: HEAD has no commits yet; commit something first") from e
            raise UnknownRevisionError(
                f"unknown revision {rev!r} in {self.path}; check the name with `git rev-parse {rev}`") from e

    def default_tips(self) -> list[tuple[str, str]]:
        """(name, sha) of HEAD and every local and remote-tracking branch."""
        tips: list[tuple[str, str]] = []
        if not self._repo.head_is_unborn:
            tips.append(("HEAD", str(self._repo.head.peel(pygit2.Commit).id)))
        for name in self._repo.references:
            if not name.startswith(("refs/heads/", "refs/remotes/")):
                continue
            try:
                ref = self._repo.references[name].resolve()
                tips.append((name, str(ref.peel(pygit2.Commit).id)))
            except (KeyError, ValueError, pygit2.GitError):
                continue  # dangling symbolic refs (origin/HEAD to a deleted branch)
        if not tips:
            raise EmptyRepositoryError(
                f"{self.path} has no commits yet (unborn HEAD, no branches); commit something first")
        return tips

    def _get(self, sha: str | pygit2.Oid, kind: type[_Obj]) -> _Obj:
        """The object `sha` names, as `kind`; ValueError when it is another kind (a corrupt or
        crafted repository); KeyError when it is missing."""
        obj = self._repo[sha]
        if not isinstance(obj, kind):
            raise ValueError(f"object {sha} is a {obj.type_str}, expected a {kind.__name__.lower()}")
        return obj

    def has_commit(self, sha: str) -> bool:
        try:
            return isinstance(self._repo[sha], pygit2.Commit)
        except (KeyError, ValueError):
            return False

    def walk(self, tips: Iterable[str], *, hide: Iterable[str] = (), topological: bool = True) -> Iterator[str]:
        """Shas reachable from tips and not from hide, newest first, children before parents.

        With topological=False, by commit time only: libgit2 then streams the walk instead of
        sorting all of it first, so taking the first N costs N, not the whole history."""
        tips = list(tips)
        if not tips:
            return
        walker = self._history_repo().walk(None, SortMode.TOPOLOGICAL | SortMode.TIME if topological else SortMode.TIME)
        for sha in tips:
            walker.push(pygit2.Oid(hex=sha))
        for sha in hide:
            if self.has_commit(sha):
                walker.hide(pygit2.Oid(hex=sha))
        for commit in walker:
            yield str(commit.id)

    def rev_list(self, rev: str, *, max_count: int | None = None, no_merges: bool = True,
                 since: int | None = None) -> list[str]:
        """Like `git rev-list [--no-merges] [--max-count] [--since] rev`, newest first."""
        out: list[str] = []
        walker = self._history_repo().walk(pygit2.Oid(hex=self.resolve(rev)), SortMode.TOPOLOGICAL | SortMode.TIME)
        for commit in walker:
            if since is not None and commit.commit_time < since:
                # git rev-list --since stops at the first older commit in date order too
                break
            if no_merges and len(commit.parent_ids) > 1:
                continue
            out.append(str(commit.id))
            if max_count is not None and len(out) >= max_count:
                break
        return out

    def commit_record(self, sha: str) -> CommitRecord:
        try:
            return self._commit_record(sha)
        except (KeyError, ValueError, pygit2.GitError) as e:
            reason = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise RepositoryReadError(f"cannot read commit {sha[:12]} in {self.path}: {type(e).__name__}: "
                                      f"{reason}; check the repository with `git fsck`") from e

    def _diff(self, commit: pygit2.Commit, parent: pygit2.Commit | None) -> pygit2.Diff:
        """The commit's diff (against the empty tree without a parent), renames found."""
        def diff() -> pygit2.Diff:
            if parent is None:
                return commit.tree.diff_to_tree(swap=True, context_lines=0)
            return self._repo.diff(parent, commit, context_lines=0)

        # similarity reads both blobs of an added/deleted pair; when one is missing (partial
        # clone), fall back to renames of identical blobs, then to no rename detection
        for flags in (None, DiffFind.FIND_RENAMES | DiffFind.FIND_EXACT_MATCH_ONLY):
            d = diff()
            try:
                d.find_similar() if flags is None else d.find_similar(flags=flags)
                return d
            except KeyError:  # pygit2.NotFoundError
                continue
        return diff()

    def _commit_record(self, sha: str) -> CommitRecord:
        commit = self._get(sha, pygit2.Commit)
        parents = self._parents_of(commit, sha)
        files: list[FileChange] = []
        added: list[bytes] = []
        removed: list[bytes] = []
        shallow = False
        code_lines = 0
        if len(parents) <= 1:
            diff = None
            if parents:
                try:
                    parent = self._get(parents[0], pygit2.Commit)
                except KeyError:
                    shallow = True  # parent beyond a shallow clone's boundary
                else:
                    diff = self._diff(commit, parent)
            else:
                diff = self._diff(commit, None)
            if diff is not None:
                for patch, missing in _patches(diff):
                    if missing is not None:
                        files.append(_unavailable_change(missing))
                        continue
                    if patch is None:
                        continue
                    change, a, r = _file_change(patch)
                    code_lines += _code_lines(patch.delta.new_file.raw_path, a + r)
                    files.append(change)
                    added.extend(a)
                    removed.extend(r)
        return self._record(commit, sha, parents, files, added, removed, shallow=shallow, code_lines=code_lines)

    def _parents_of(self, commit: pygit2.Commit, sha: str) -> tuple[str, ...]:
        parents = tuple(str(p) for p in commit.parent_ids)
        if not parents and sha in self.shallow_boundary():
            # libgit2 grafts a shallow clone's boundary commits into roots; diffing them
            # against the empty tree would record the whole tree as added by them
            parents = _raw_parents(commit.read_raw())
        return parents

    def _record(self, commit: pygit2.Commit, sha: str, parents: tuple[str, ...], files: Sequence[FileChange],
                added: list[bytes], removed: list[bytes], *, shallow: bool = False,
                code_lines: int = 0) -> CommitRecord:
        message = decode_text(commit.raw_message, commit.message_encoding)
        subject, body, trailers = split_message(message)
        return CommitRecord(
            sha=sha, parents=parents, author=_signature(commit.author),
            committer=_signature(commit.committer), subject=subject, body=body,
            trailers=trailers, files=tuple(files),
            idents_added=_idents(added), idents_removed=_idents(removed), shallow=shallow,
            code_lines=code_lines,
        )

    def commit_records(self, shas: Sequence[str]) -> list[CommitRecord]:
        """commit_record of each sha, the diffs of ordinary commits read from one `git
        diff-tree` stream (rcahook.index.gitdiff: ten times faster or more than libgit2's);
        roots, shallow boundaries, partial clones and whatever git fails on go through libgit2."""
        commits: dict[str, tuple[pygit2.Commit, tuple[str, ...]]] = {}
        pairs: list[tuple[str, str]] = []
        if self._git_diffs_usable():
            for sha in shas:
                try:
                    commit = self._get(sha, pygit2.Commit)
                except (KeyError, ValueError):
                    continue  # commit_record says what is wrong
                parents = self._parents_of(commit, sha)
                commits[sha] = (commit, parents)
                if len(parents) == 1 and self.has_commit(parents[0]) and sha not in self.shallow_boundary():
                    pairs.append((sha, parents[0]))
        diffs = gitdiff.read(self.git_dir, pairs, git_env()) if pairs else None
        out: list[CommitRecord] = []
        for sha in shas:
            if sha in commits and len(commits[sha][1]) > 1:  # a merge: no files (CommitRecord.files)
                commit, parents = commits[sha]
                out.append(self._record(commit, sha, parents, (), [], []))
            elif diffs is not None and sha in diffs:
                commit, parents = commits[sha]
                out.append(self._record_from_diff(commit, sha, parents, diffs[sha]))
            else:
                out.append(self.commit_record(sha))
        return out

    def _record_from_diff(self, commit: pygit2.Commit, sha: str, parents: tuple[str, ...],
                          diffs: Sequence[gitdiff.FileDiff]) -> CommitRecord:
        files: list[FileChange] = []
        added: list[bytes] = []
        removed: list[bytes] = []
        code_lines = 0
        for d in diffs:
            files.append(FileChange(
                path=decode_path(d.raw_path), old_path=decode_path(d.raw_old_path) if d.raw_old_path else None,
                status=d.status, added=len(d.added), deleted=len(d.removed), binary=d.binary,
                hunks=tuple(Hunk(*h) for h in d.hunks), old_blob=d.old_blob, new_blob=d.new_blob))
            code_lines += _code_lines(d.raw_path, [*d.added, *d.removed])
            added.extend(d.added)
            removed.extend(d.removed)
        return self._record(commit, sha, parents, files, added, removed, code_lines=code_lines)

    def _git_diffs_usable(self) -> bool:
        """Whether `git diff-tree` may read this repository's diffs: not for a partial clone,
        whose missing blobs the git command would fetch (libgit2 reports them instead)."""
        if self._git_diffs is None:
            try:
                promisor = any(entry.name.lower() == "extensions.partialclone" or
                               (entry.name.lower().startswith("remote.") and entry.name.lower().endswith(".promisor")
                                and str(entry.value).lower() in ("true", "yes", "on", "1"))
                               for entry in self._repo.config)
            except (pygit2.GitError, ValueError, KeyError):  # a config libgit2 cannot read: git may not either
                promisor = True
            self._git_diffs = not promisor and os.environ.get("RCAHOOK_DIFFS") != "libgit2"
        return self._git_diffs

    def shallow_boundary(self) -> frozenset[str]:
        """The commits whose parents this shallow clone lacks (empty when it is not shallow)."""
        if self._shallow is None:
            try:
                text = (self.common_dir / "shallow").read_text()  # shared by linked worktrees
            except FileNotFoundError:
                text = ""
            self._shallow = frozenset(text.split())
        return self._shallow

    def newest_ancestors(self, sha: str, n: int) -> list[str]:
        """The first n commits of `git rev-list --date-order`-like order from sha (newest
        commit time first among those whose children came out), in time proportional to n."""
        out: list[str] = []
        seen = {sha}
        heap = [(-self.commit_time(sha), sha)]
        while heap and len(out) < n:
            _, current = heapq.heappop(heap)
            out.append(current)
            for p in self.walk_parents(current):
                if p not in seen:
                    seen.add(p)
                    heapq.heappush(heap, (-self.commit_time(p), p))
        return out

    def walk_parents(self, sha: str) -> tuple[str, ...]:
        """The parents a walk of this repository goes on to, as `walk` sees them: none past a
        shallow clone's boundary, only those present."""
        if sha in self.shallow_boundary():
            return ()
        return tuple(p for p in self.parents(sha) if self.has_commit(p))

    def commit_time(self, sha: str) -> int:
        return self._get(sha, pygit2.Commit).commit_time

    def parents(self, sha: str) -> tuple[str, ...]:
        return tuple(str(p) for p in self._get(sha, pygit2.Commit).parent_ids)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """`git merge-base --is-ancestor`: ancestor is descendant or one of its ancestors."""
        return ancestor == descendant or self._repo.descendant_of(pygit2.Oid(hex=descendant), pygit2.Oid(hex=ancestor))

    def list_tree(self, rev: str) -> list[TreeEntry]:
        """Every blob in the tree at rev (recursively), without a checkout."""
        tree = self._get(self.resolve(rev), pygit2.Commit).tree
        out: list[TreeEntry] = []
        stack = [("", tree)]
        while stack:
            prefix, t = stack.pop()
            for entry in t:
                raw = getattr(entry, "raw_name", None)  # pygit2 before 1.15 has only the decoded name
                name = decode_path(raw) if raw is not None else str(entry.name)
                path = f"{prefix}{name}"
                if entry.type_str == "tree":
                    stack.append((path + "/", self._get(entry.id, pygit2.Tree)))
                elif isinstance(entry, pygit2.Blob):  # type_str "blob"; loaded only when read
                    try:
                        size: int | None = entry.size
                    except KeyError:  # pygit2.NotFoundError: not in this (partial) clone
                        size = None
                    out.append(TreeEntry(path, str(entry.id), size))
        return out

    def read_blob(self, blob: str) -> bytes:
        """The blob's bytes; KeyError when it is not in this clone (partial clone)."""
        return self._get(blob, pygit2.Blob).data

    def read_path(self, rev: str, path: str) -> bytes | None:
        """File content at rev, or None when it does not exist there."""
        try:
            entry = self._get(self.resolve(rev), pygit2.Commit).tree[path]
            obj = self._repo[entry.id]
        except KeyError:  # no such path, or its blob is not in this (partial) clone
            return None
        return obj.data if isinstance(obj, pygit2.Blob) else None

    def changed_paths(self, old: str, new: str) -> list[tuple[str, str | None, str | None]]:
        """(path, old_blob, new_blob) for each file that differs between two revisions."""
        diff = self._repo.diff(self._get(self.resolve(old), pygit2.Commit),
                               self._get(self.resolve(new), pygit2.Commit))
        zero = "0" * 40
        out: list[tuple[str, str | None, str | None]] = []
        for delta in diff.deltas:
            ob, nb = str(delta.old_file.id), str(delta.new_file.id)
            if ob != zero:
                out.append((decode_path(delta.old_file.raw_path), ob, None))
            if nb != zero:
                out.append((decode_path(delta.new_file.raw_path), None, nb))
        return out

    def diff_text(self, sha: str, *, max_bytes: int = 20_000, context_lines: int = 1) -> str:
        """The commit's patch against its first parent, cut at max_bytes."""
        commit = self._get(sha, pygit2.Commit)
        if len(commit.parent_ids) > 1 or str(commit.id) in self.shallow_boundary():
            return ""
        if commit.parent_ids:
            try:
                diff = self._repo.diff(self._get(commit.parent_ids[0], pygit2.Commit), commit,
                                       context_lines=context_lines)
            except KeyError:
                return ""
        else:
            diff = commit.tree.diff_to_tree(swap=True, context_lines=context_lines)
        chunks: list[bytes] = []
        size = 0
        for patch, _ in _patches(diff):  # files whose blobs this clone lacks are left out
            if patch is None or patch.delta.is_binary:
                continue
            data = patch.data
            chunks.append(data)
            size += len(data)
            if size >= max_bytes:
                break
        return decode_text(b"".join(chunks)[:max_bytes])


# -- the git command line: scratch worktrees (rcahook bisect, rcahook verify) ---------------------
# A linked worktree that git itself knows (and `git worktree list` shows, and removes as it
# does its own) and a revert with git's merge machinery: these few operations go through git.

# What an inherited GIT_* variable may keep (as pre-commit's git.py does): GIT_DIR, GIT_WORK_TREE
# or GIT_INDEX_FILE, set when rcahook runs inside a git hook, would point git at another repository.
_KEEP_GIT_ENV = frozenset({"GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY",
                           "GIT_CONFIG_COUNT", "GIT_CONFIG_NOSYSTEM", "GIT_HTTP_PROXY_AUTHMETHOD",
                           "GIT_ALLOW_PROTOCOL", "GIT_ASKPASS"})
_KEEP_GIT_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "GIT_AUTHOR_", "GIT_COMMITTER_")
# Hooks and an fsmonitor command are set by files under .git/: repository content, never run here.
_SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "advice.detachedHead=false")


def line_diff(old: bytes, new: bytes) -> list[tuple[int, int, int, int]]:
    """The hunks (old_start, old_lines, new_start, new_lines) of a zero-context line diff of two
    texts, by libgit2's xdiff (a few milliseconds for a 100 kB file); none for binary text."""
    patch = pygit2.Patch.create_from(old, new, context_lines=0)
    return [(h.old_start, h.old_lines, h.new_start, h.new_lines) for h in patch.hunks]


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") or k in _KEEP_GIT_ENV or k.startswith(_KEEP_GIT_PREFIXES)}
    env["GIT_NO_LAZY_FETCH"] = "1"  # a partial clone's missing objects are not fetched (module doc)
    return env


def run_git(args: Sequence[str], *, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["git", *_SAFE_CONFIG, *args], cwd=cwd, env=git_env(), capture_output=True,
                              text=True, errors="replace", stdin=subprocess.DEVNULL)
    except OSError as e:
        raise GitFailedError(f"cannot run git ({e.strerror}); is it installed and on PATH?") from None
    if check and proc.returncode:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        last = said[-1] if said else f"exit {proc.returncode}"
        raise GitFailedError(f"`git {' '.join(args)}` failed in {cwd}: {last}")
    return proc


def worktree_add(common_dir: Path, path: Path, rev: str) -> None:
    """A new linked worktree at `path`, HEAD detached at `rev` (no branch is created)."""
    run_git([f"--git-dir={common_dir}", "worktree", "add", "--detach", "--quiet", str(path), rev], cwd=common_dir)


def worktree_remove(common_dir: Path, path: Path) -> bool:
    """Remove the linked worktree at `path`, changes and all; also when its directory is gone
    already (a killed run): git then drops its record. False when git knows no such worktree."""
    return run_git([f"--git-dir={common_dir}", "worktree", "remove", "--force", "--force", str(path)],
                   cwd=common_dir, check=False).returncode == 0


def worktree_paths(common_dir: Path) -> list[Path]:
    """Every worktree git knows for this repository, the main one first."""
    out = run_git([f"--git-dir={common_dir}", "worktree", "list", "--porcelain", "-z"], cwd=common_dir).stdout
    return [Path(field[len("worktree "):]) for field in out.split("\0") if field.startswith("worktree ")]


def checkout_clean(worktree: Path, rev: str) -> None:
    """Put `worktree` at `rev` exactly as committed: local changes are discarded and untracked
    files removed; ignored files (build caches) are kept, as `git bisect` keeps them."""
    run_git(["checkout", "--quiet", "--force", "--detach", rev], cwd=worktree)
    run_git(["clean", "--quiet", "-ffd"], cwd=worktree)


def revert_no_commit(worktree: Path, sha: str, *, mainline: int | None = None) -> list[str]:
    """Apply the reverse of `sha` to `worktree` (`git revert --no-commit`); [] when it applied,
    else the paths left in conflict."""
    args = ["revert", "--no-commit", *(["-m", str(mainline)] if mainline else []), sha]
    proc = run_git(args, cwd=worktree, check=False)
    if proc.returncode == 0:
        return []
    unmerged = run_git(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=worktree).stdout
    conflicted = [decode_path(p.encode("utf-8", "surrogateescape")) for p in unmerged.split("\0") if p]
    if not conflicted:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitFailedError(f"`git revert --no-commit {sha[:12]}` failed: {said[-1] if said else proc.returncode}")
    return conflicted


def status_porcelain(workdir: Path) -> str:
    """`git status --porcelain` of a work tree: empty when it is clean. Without optional locks:
    a plain `git status` may rewrite the index to refresh it, and the user's index is not ours."""
    return run_git(["--no-optional-locks", "status", "--porcelain", "-z"], cwd=workdir).stdout
