from __future__ import annotations

import itertools
import os
import subprocess

import pytest

from rcahook.errors import EmptyRepositoryError, NotARepositoryError, UnknownRevisionError
from rcahook.index.gitrepo import Repo, decode_path, decode_text, parse_trailers, split_message

# -- messages ------------------------------------------------------------------------------------

def test_split_message_subject_body_trailers():
    subject, body, trailers = split_message(
        "net: fix the thing\n\nLonger explanation\nover two lines.\n\n"
        "Fixes: 0123456789ab (\"net: add thing\")\nSigned-off-by: A <a@example.com>\n")
    assert subject == "net: fix the thing"
    assert body == ("Longer explanation\nover two lines.\n\n"
                    "Fixes: 0123456789ab (\"net: add thing\")\nSigned-off-by: A <a@example.com>")
    assert trailers == (("Fixes", '0123456789ab ("net: add thing")'), ("Signed-off-by", "A <a@example.com>"))


def test_split_message_joins_a_multi_line_subject_and_handles_crlf():
    subject, body, trailers = split_message("first line\r\nsecond line\r\n\r\nbody\r\n")
    assert (subject, body, trailers) == ("first line second line", "body", ())


def test_split_message_subject_only_and_empty():
    assert split_message("just a subject\n") == ("just a subject", "", ())
    assert split_message("") == ("", "", ())


def test_parse_trailers_only_an_all_trailer_last_paragraph():
    assert parse_trailers("Reviewed-by: B\nnot a trailer") == ()
    assert parse_trailers("Reviewed-by: B\n\nplain text") == ()
    assert parse_trailers("text\n\nAcked-by: C\nCc: d@example.com") == (("Acked-by", "C"), ("Cc", "d@example.com"))
    assert parse_trailers("") == ()


def test_parse_trailers_continuation_lines():
    assert parse_trailers("Link: https://example.com/a\n  /very/long\nCc: x") == (
        ("Link", "https://example.com/a /very/long"), ("Cc", "x"))


def test_decode_text():
    assert decode_text("café".encode()) == "café"
    assert decode_text("café".encode("latin-1")) == "café"  # not UTF-8: latin-1, never an error
    assert decode_text("café".encode("latin-1"), "ISO-8859-1") == "café"
    assert decode_text("Привет".encode("koi8-r"), "KOI8-R") == "Привет"
    assert decode_text("café".encode(), "no-such-encoding") == "café"  # unknown name: try UTF-8
    assert decode_text("café".encode(), "ascii") == "café"  # header lies: fall back


def test_decode_path_keeps_undecodable_bytes_visible():
    assert decode_path(b"caf\xe9.txt") == "caf\\xe9.txt"
    assert decode_path("café.txt".encode()) == "café.txt"


# -- opening and resolving -----------------------------------------------------------------------

def test_not_a_repository(tmp_path):
    with pytest.raises(NotARepositoryError, match="is not a git repository"):
        Repo(tmp_path)
    with pytest.raises(NotARepositoryError, match="no such directory"):
        Repo(tmp_path / "missing")


def test_discovers_upwards_and_resolves(repo):
    sha = repo.commit("one", {"src/a.txt": "a\n"})
    r = Repo(repo.path / "src")
    assert r.resolve("HEAD") == sha
    assert r.resolve(sha[:8]) == sha
    assert r.resolve("main") == sha
    repo.git("tag", "-a", "v1", "-m", "tag")
    assert r.resolve("v1") == sha  # annotated tags peel to their commit
    with pytest.raises(UnknownRevisionError, match="'nope'"):
        r.resolve("nope")


def test_empty_repository(make_repo):
    empty = make_repo()
    r = Repo(empty.path)
    with pytest.raises(EmptyRepositoryError):
        r.resolve("HEAD")
    with pytest.raises(EmptyRepositoryError, match="no commits yet"):
        r.default_tips()


# -- walking -------------------------------------------------------------------------------------

def history_with_merges(repo, *, same_time: bool = False) -> None:
    """Two merged side branches; every commit at one time, or each an hour after the last."""
    times = itertools.count(1_704_067_200, 0 if same_time else 3600)

    def commit(message, files):
        repo.commit(message, files, date=f"{next(times)} +0000")

    def merge(branch):
        when = f"{next(times)} +0000"
        repo.git("merge", "-q", "--no-ff", "-m", f"merge {branch}", branch,
                 env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})

    commit("a", {"f": "1\n"})
    repo.git("checkout", "-q", "-b", "side")
    commit("b", {"g": "1\n"})
    commit("c", {"g": "2\n"})
    repo.git("checkout", "-q", "main")
    commit("d", {"f": "2\n"})
    merge("side")
    commit("e", {"f": "3\n"})
    repo.git("checkout", "-q", "-b", "side2", "HEAD~1")
    commit("f", {"h": "1\n"})
    commit("g", {"h": "2\n"})
    repo.git("checkout", "-q", "main")
    commit("h", {"f": "4\n"})
    merge("side2")
    commit("i", {"f": "5\n"})


def test_rev_list_matches_git(repo):
    history_with_merges(repo)
    r = Repo(repo.path)
    for args, kwargs in ((["--no-merges"], {}), ([], {"no_merges": False}),
                         (["--no-merges", "--max-count=3"], {"max_count": 3})):
        expected = repo.git("rev-list", *args, "HEAD").split()
        assert r.rev_list("HEAD", **kwargs) == expected


def test_walk_children_before_parents_and_hide(repo):
    history_with_merges(repo)
    r = Repo(repo.path)
    shas = list(r.walk([r.resolve("HEAD")]))
    assert sorted(shas) == sorted(repo.git("rev-list", "HEAD").split())
    position = {sha: i for i, sha in enumerate(shas)}
    for sha in shas:
        for parent in repo.git("rev-parse", f"{sha}^@").split():
            assert position[sha] < position[parent]
    side = r.resolve("side")
    hidden = list(r.walk([r.resolve("HEAD")], hide=[side, "0" * 40]))  # unknown shas are ignored
    assert sorted(hidden) == sorted(repo.git("rev-list", "HEAD", "^side").split())


def test_default_tips_include_branches(repo):
    repo.commit("a", {"f": "1\n"})
    repo.git("checkout", "-q", "-b", "other")
    other = repo.commit("b", {"f": "2\n"})
    repo.git("checkout", "-q", "main")
    tips = dict(Repo(repo.path).default_tips())
    assert tips["refs/heads/other"] == other
    assert tips["HEAD"] == tips["refs/heads/main"]


# -- commits -------------------------------------------------------------------------------------

def test_commit_record_rename_binary_and_hunks(repo):
    repo.commit("add", {"a.txt": "".join(f"line {i}\n" for i in range(20)), "b.bin": b"\x00\x01\x02"})
    repo.git("mv", "a.txt", "moved.txt")
    sha = repo.commit("move and edit", {"moved.txt": "".join(f"line {i}\n" for i in range(19)) + "changed\n",
                                        "b.bin": b"\x00\x03"})
    rec = Repo(repo.path).commit_record(sha)
    by_path = {f.path: f for f in rec.files}
    moved = by_path["moved.txt"]
    assert (moved.status, moved.old_path, moved.added, moved.deleted) == ("R", "a.txt", 1, 1)
    assert [(h.old_start, h.old_lines, h.new_start, h.new_lines) for h in moved.hunks] == [(20, 1, 20, 1)]
    binary = by_path["b.bin"]
    assert (binary.status, binary.binary, binary.added, binary.deleted, binary.hunks) == ("M", True, 0, 0, ())
    assert "changed" in rec.idents_added


def test_commit_record_merge_has_no_files(repo):
    history_with_merges(repo)
    r = Repo(repo.path)
    merge = r.resolve("HEAD~1")
    rec = r.commit_record(merge)
    assert len(rec.parents) == 2 and rec.files == ()
    assert r.diff_text(merge) == ""


def test_commit_record_non_utf8_message_and_path(repo):
    repo.write("x", "x\n")
    repo.git("add", "x")
    repo.git("-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "-F", "-",
             input="Caf\xe9 fix\n\nR\xe9sum\xe9\n".encode("latin-1"))
    tagged = repo.git("rev-parse", "HEAD")
    (repo.path / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"y\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-F", "-", input="Na\xefve\n".encode("latin-1"))  # no encoding header
    untagged = repo.git("rev-parse", "HEAD")
    r = Repo(repo.path)
    assert (r.commit_record(tagged).subject, r.commit_record(tagged).body) == ("Café fix", "Résumé")
    rec = r.commit_record(untagged)
    assert rec.subject == "Naïve"
    assert [f.path for f in rec.files] == ["caf\\xe9.txt"]


def test_shallow_clone_boundary_commit_records_no_files(repo, tmp_path):
    for i in range(5):
        repo.commit(f"c{i}", {"f.txt": f"{i}\n", f"g{i}.txt": "g\n"})
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{repo.path}", str(clone)], check=True)
    r = Repo(clone)
    assert r.is_shallow
    shas = list(r.walk([r.resolve("HEAD")]))
    assert len(shas) == 2
    boundary = r.commit_record(shas[-1])
    assert boundary.shallow and boundary.files == ()
    assert boundary.parents == (repo.git("rev-parse", "HEAD~2"),)  # as written, though not fetched
    assert r.diff_text(shas[-1]) == ""
    top = r.commit_record(shas[0])
    assert not top.shallow and {f.path for f in top.files} == {"f.txt", "g4.txt"}


# -- trees ---------------------------------------------------------------------------------------

def test_list_tree_and_read_path_on_a_bare_clone(repo, tmp_path):
    repo.commit("one", {"a.txt": "a\n", "src/pkg/b.py": "print(1)\n", "src/c.bin": b"\x00" * 10})
    sha = repo.commit("two", {"a.txt": "a2\n"})
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    r = Repo(bare)
    assert r.workdir is None
    entries = sorted(r.list_tree("HEAD"), key=lambda e: e.path)
    expected = repo.git("ls-tree", "-r", "-l", "HEAD").splitlines()
    assert [(e.path, e.blob, e.size) for e in entries] == [
        (line.split("\t")[1], line.split()[2], int(line.split()[3])) for line in expected]
    assert r.read_path("HEAD", "a.txt") == b"a2\n"
    assert r.read_path(f"{sha}~1", "a.txt") == b"a\n"
    assert r.read_path("HEAD", "src/pkg/b.py") == b"print(1)\n"
    assert r.read_path("HEAD", "src") is None  # a directory is not a file
    assert r.read_path("HEAD", "missing.txt") is None


def test_code_lines_leave_out_blank_lines_and_comments(repo):
    repo.commit("init", {"a.py": "def f():\n    return 1\n", "b.c": "int g(void) { return 0; }\n"})
    comment = repo.commit("explain f", {"a.py": "def f():\n    # why: see the spec\n\n    return 1\n"})
    code = repo.commit("change g", {"b.c": "#include <x.h>\n/* note */\nint g(void) { return 1; }\n"})
    r = Repo(repo.path)
    assert r.commit_record(comment).code_lines == 0
    # the preprocessor line is code in C; the comment is not; one line replaced counts twice
    assert r.commit_record(code).code_lines == 3


def test_code_lines_counted_by_one_regex_as_line_by_line():
    """The regex count agrees with the rule it encodes, read line by line: strip, then neither
    empty, nor "*", nor a comment prefix (nor "#" in languages of #-comments); the prefixes
    that end in a space ("* ", "-- ") count only when text follows them."""
    import random

    from rcahook.index.gitrepo import _code_lines

    prefixes = (b"//", b"/*", b"* ", b"*/", b"-- ", b"<!--", b'"""', b"'''", b";;")

    def by_line(path: bytes, lines: list[bytes]) -> int:
        name = path.rsplit(b"/", 1)[-1].lower()
        hashed = name.endswith((b".py", b".sh")) or name == b"makefile"
        texts = [line[1:].strip() for line in lines]
        return sum(1 for t in texts if t and t != b"*" and not t.startswith(prefixes)
                   and not (hashed and t.startswith(b"#")))

    assert _code_lines(b"a.c", [b"+-- ", b"+--  x", b"+*  ", b"+ * x", b"+*\tx", b"-#if X", b"+  \r"]) == 3
    rng = random.Random(5)
    alphabet = [b" ", b"\t", b"\r", b"\x0c", b"*", b"/", b"-", b"#", b"<", b"!", b'"', b"'", b";", b"x"]
    for _ in range(20000):
        lines = [rng.choice([b"+", b"-"]) + b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                 for _ in range(rng.randint(1, 4))]
        for path in (b"src/a.c", b"tools/run.sh", b"Makefile"):
            assert _code_lines(path, lines) == by_line(path, lines), (path, lines)
