"""The index reads diffs from `git diff-tree` (rcahook.index.gitdiff): the same records as
libgit2's, nothing in the repository runs, and anything odd falls back to libgit2."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rcahook.index import gitdiff
from rcahook.index.gitrepo import Repo, git_env


def _edge_history(repo) -> list[str]:
    """Commits covering what a diff can hold: every status, odd paths, binary, no newline at
    the end, empty and merge commits, a symlink, type changes, CRLF."""
    shas = [repo.commit("root: several files", {
        "src/a.c": "".join(f"int f{i}(void) {{ return {i}; }}\n" for i in range(40)),
        "doc/readme.md": "# readme\n\nsome words\n",
        "bin/blob.dat": b"\x00\x01\x02binary\x00" * 20,
        "nonl.txt": "last line without newline",
        "old/name.py": "".join(f"def g{i}(x):\n    return x + {i}\n" for i in range(30)),
        "crlf.txt": "one\r\ntwo\r\nthree\r\n",
    })]
    text = (repo.path / "src/a.c").read_text().splitlines(keepends=True)
    text[3] = "int f3(void) { return -3; }\n"
    text[30:32] = ["int f30(int x) { return x; }\n", "int extra(void) { return 0; }\n", "\n"]
    shas.append(repo.commit("modify in several hunks", {"src/a.c": "".join(text), "nonl.txt": "changed, still none"}))
    shas.append(repo.commit("binary change and a delete", {"bin/blob.dat": b"\x00\x09binary\x00" * 21,
                                                           "doc/readme.md": None}))
    moved = (repo.path / "old/name.py").read_text().replace("return x + 5", "return x - 5")
    (repo.path / "old/name.py").unlink()
    shas.append(repo.commit("rename with an edit", {"new/place.py": moved}))
    shas.append(repo.commit("odd paths", {"dir with space/file \"q\".txt": "q\n", "new\nline.txt": "nl\n",
                                          "caf\u00e9.rs": "fn main() {}\n", "crlf.txt": "one\r\n2\r\nthree\r\n"}))
    raw = os.fsencode(repo.path) + b"/latin1-\xe9.txt"
    with open(raw, "wb") as f:
        f.write(b"latin one\n")
    shas.append(repo.commit("a path that is not UTF-8"))
    os.symlink("src/a.c", repo.path / "link")
    os.chmod(repo.path / "new/place.py", 0o755)
    shas.append(repo.commit("symlink and mode change"))
    (repo.path / "nonl.txt").unlink()
    os.symlink("src/a.c", repo.path / "nonl.txt")
    (repo.path / "link").unlink()
    (repo.path / "link").write_text("a file now\n")
    shas.append(repo.commit("type changes: a file becomes a symlink, a symlink a file"))
    shas.append(repo.commit("empty commit"))
    repo.git("checkout", "-q", "-b", "side", shas[2])
    side = repo.commit("side work", {"side.go": "package side\n\nfunc S() int { return 1 }\n"})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge side", side)
    shas += [side, repo.git("rev-parse", "HEAD")]
    return shas


def test_records_from_git_equal_libgit2s(repo):
    shas = _edge_history(repo)
    r = Repo(repo.path)
    assert r._git_diffs_usable()
    fast = r.commit_records(shas)
    slow = [r.commit_record(sha) for sha in shas]
    assert [f.sha for f in fast] == shas
    for a, b in zip(fast, slow):
        assert a == b, a.subject
    renamed = {f.path: f for f in fast[3].files}["new/place.py"]
    assert renamed.status == "R" and renamed.old_path == "old/name.py" and renamed.added == renamed.deleted == 1
    files = {f.path: f for rec in fast for f in rec.files}
    assert files["bin/blob.dat"].binary and "new\nline.txt" in files and "latin1-\\xe9.txt" in files
    assert fast[-1].files == () and len(fast[-1].parents) == 2  # the merge


def test_git_output_is_what_the_records_come_from(repo):
    """The git path really runs (no silent fallback): its parse of these commits is whole."""
    shas = _edge_history(repo)
    r = Repo(repo.path)
    pairs = [(s, r.parents(s)[0]) for s in shas if len(r.parents(s)) == 1]
    diffs = gitdiff.read(r.git_dir, pairs, git_env())
    assert diffs is not None and set(diffs) == {s for s, _ in pairs}
    renamed = [d for d in diffs[shas[3]] if d.status == "R"]
    assert renamed and renamed[0].raw_old_path == b"old/name.py" and renamed[0].added and renamed[0].removed


def test_repository_config_runs_nothing(repo, tmp_path):
    """textconv, an external diff and a pager set by the repository's own files never run."""
    marker = tmp_path / "ran"
    evil = f"sh -c 'touch {marker}'"
    repo.git("config", "diff.evil.textconv", evil)
    repo.git("config", "diff.external", evil)
    repo.git("config", "core.pager", evil)
    repo.git("config", "log.showSignature", "true")
    repo.write(".gitattributes", "*.txt diff=evil\n")
    first = repo.commit("one", {"a.txt": "1\n"})
    second = repo.commit("two", {"a.txt": "2\n"})
    r = Repo(repo.path)
    diffs = gitdiff.read(r.git_dir, [(second, first)], git_env())
    assert diffs is not None and diffs[second][0].added == (b"+2",)
    assert r.commit_records([second])[0].files[0].added == 1
    assert not marker.exists()


def test_replace_refs_are_ignored(repo):
    """libgit2 does not honour refs/replace/, so neither may git here: the index must hold the
    objects as they are."""
    base = repo.commit("base", {"a.py": "x = 1\n"})
    real = repo.commit("real change", {"a.py": "x = 2\n"})
    repo.git("checkout", "-q", "-b", "other", base)
    fake = repo.commit("fake", {"a.py": "x = 3\nstolen = 1\n"})
    repo.git("checkout", "-q", "main")
    repo.git("replace", real, fake)
    r = Repo(repo.path)
    assert r.commit_records([real]) == [r.commit_record(real)]
    assert r.commit_records([real])[0].files[0].added == 1


def test_partial_clone_stays_on_libgit2(repo, tmp_path):
    """The git here would fetch a partial clone's missing blobs; libgit2 never does."""
    repo.commit("one", {"a.py": "x = 1\n"})
    repo.git("config", "uploadpack.allowFilter", "true")
    dst = tmp_path / "partial"
    subprocess.run(["git", "clone", "-q", "--no-local", "--filter=blob:none", repo.path.as_uri(), str(dst)],
                   check=True, capture_output=True)
    assert not Repo(dst)._git_diffs_usable()
    assert Repo(repo.path)._git_diffs_usable()


def test_without_git_on_path_libgit2_answers(repo, monkeypatch, tmp_path):
    shas = _edge_history(repo)[:4]
    r = Repo(repo.path)
    expected = [r.commit_record(s) for s in shas]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gitdiff.read(r.git_dir, [(shas[1], shas[0])], git_env()) is None
    assert r.commit_records(shas) == expected


def test_missing_object_falls_back(repo):
    """git fails on a commit whose blob is gone: libgit2's record (which says so) is used."""
    first = repo.commit("one", {"a.py": "x = 1\n"})
    second = repo.commit("two", {"a.py": "x = 2\n"})
    blob = repo.git("rev-parse", f"{second}:a.py")
    obj = repo.path / ".git" / "objects" / blob[:2] / blob[2:]
    obj.chmod(0o644)
    obj.unlink()
    r = Repo(repo.path)
    assert gitdiff.read(r.git_dir, [(second, first)], git_env()) is None
    rec = r.commit_records([second])[0]
    assert rec.files[0].unavailable


@pytest.mark.parametrize("junk", [
    b"",  # nothing for a commit asked for
    b"0" * 40 + b"\0",  # another commit
    b"%s\0:100644 100644 abc def M\0a\0" ,  # abbreviated blob ids
    b"%s\0:100644 100644 " + b"1" * 40 + b" " + b"2" * 40 + b" M\0a\0\0@@ -1 +1 @@\n",  # no diff header
    b"%s\0:100644 100644 " + b"1" * 40 + b" " + b"2" * 40 + b" M\0a\0\0diff --git a/a b/a\n@@ -1,2 +1 @@\n-x\n",
])
def test_unexpected_output_is_rejected(junk):
    sha = "a" * 40
    data = junk.replace(b"%s", sha.encode()) if b"%s" in junk else junk
    with pytest.raises(gitdiff.ParseError):
        gitdiff.parse(data, [sha])


def test_a_commit_whose_parent_is_missing_is_shallow(repo, tmp_path):
    """A shallow clone's boundary: libgit2's answer (shallow, no files), never a diff against
    the empty tree."""
    for i in range(3):
        repo.commit(f"c{i}", {"a.py": f"x = {i}\n"})
    dst = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--no-local", "--depth", "2", repo.path.as_uri(), str(dst)],
                   check=True, capture_output=True)
    r = Repo(dst)
    shas = list(r.walk([r.resolve("HEAD")]))
    recs = r.commit_records(shas)
    assert recs == [r.commit_record(s) for s in shas]
    assert len(recs) == 2 and recs[-1].files == ()
    assert Path(dst / ".git" / "shallow").is_file()


@pytest.mark.parametrize("size", [1, 7, 64])
def test_parsed_as_it_streams_in_small_reads(repo, monkeypatch, size):
    """Output read a few bytes at a time (every field, line and hunk cut somewhere) parses to
    what the whole output parses to."""
    shas = _edge_history(repo)
    r = Repo(repo.path)
    pairs = [(s, r.parents(s)[0]) for s in shas if len(r.parents(s)) == 1]
    whole = gitdiff.read(r.git_dir, pairs, git_env())
    monkeypatch.setattr(gitdiff, "READ", size)
    assert gitdiff.read(r.git_dir, pairs, git_env()) == whole
    assert whole is not None and len(whole) == len(pairs)


def test_the_user_can_keep_every_repository_on_libgit2(repo, monkeypatch):
    repo.commit("one", {"a.py": "x = 1\n"})
    assert Repo(repo.path)._git_diffs_usable()
    monkeypatch.setenv("RCAHOOK_DIFFS", "libgit2")
    assert not Repo(repo.path)._git_diffs_usable()


def test_a_huge_commit_is_read_in_growing_pieces(repo, monkeypatch):
    """A commit is parsed again from its start whenever its output runs past what was read:
    the reads must grow geometrically (a pipe gives 64 KiB at a time), else a commit deleting
    a whole monorepo tree costs its size squared (seen at 1M commits: minutes for one commit)."""
    first = repo.commit("tree", {f"d/f{i}.c": "".join(f"int v{i}_{j};\n" for j in range(200))
                                 for i in range(200)})
    second = repo.commit("delete it all", {f"d/f{i}.c": None for i in range(200)})
    attempts = []
    real = gitdiff._commit

    def counting(r, sha):
        attempts.append(len(r.buf))
        return real(r, sha)

    monkeypatch.setattr(gitdiff, "_commit", counting)
    monkeypatch.setattr(gitdiff, "READ", 1024)
    r = Repo(repo.path)
    diffs = gitdiff.read(r.git_dir, [(second, first)], git_env())
    assert diffs is not None and len(diffs[second]) == 200 and sum(len(d.removed) for d in diffs[second]) == 40_000
    assert attempts[-1] > 500_000  # the whole output, about 0.6 MB
    assert len(attempts) <= 12  # doubling from 1 KiB: 11; one attempt per pipe read was 18
