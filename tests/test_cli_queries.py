"""`rcahook owners`, `show` and `links`: text for people, JSON that matches docs/queries.md."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from rcahook.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "queries.md"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86400
ALICE, BOB, CAROL = "Alice <alice@example.com>", "Bob <bob@example.com>", "Carol <carol@example.com>"


def schemas() -> dict[str, dict]:
    found = re.findall(r"<!-- schema: (\w+) -->\s*```json\n(.*?)```", DOCS.read_text(), re.S)
    return {name: json.loads(text) for name, text in found}


SCHEMAS = schemas()


def at(days: float, offset: str = "+0000") -> str:
    return f"{int(T0 + days * DAY)} {offset}"


class Project:
    """A small history with owners, a culprit and its fix, a revert, a rename and a merge."""

    def __init__(self, repo):
        self.repo = repo
        self.base = repo.commit("init", {
            ".github/CODEOWNERS": "* @org/everyone\n/src/ @org/backend\n*.md @org/docs\n",
            "src/app.py": "def serve():\n    return 1\n",
            "src/util.py": "def helper():\n    return 1\n",
            "README.md": "hello\n",
        }, author=ALICE, date=at(0, "+0200"))
        self.culprit = repo.commit("[perf] serve: cache responses\n\nFaster.\n", {
            "src/app.py": "def serve():\n    return 2\n", "logo.png": bytes(range(256))}, author=BOB, date=at(10))
        self.fix = repo.commit(
            f'serve: fix stale cache\n\nFixes: {self.culprit[:12]} ("[perf] serve: cache responses")\n'
            "Fixes: 0123456789abc\nReviewed-by: Carol <carol@example.com>\n",
            {"src/app.py": "def serve():\n    return 3\n"}, author=CAROL, date=at(20))
        repo.git("mv", "src/util.py", "src/helpers.py")
        self.rename = repo.commit("move util to helpers", {}, author=BOB, date=at(30))
        repo.git("checkout", "-q", "-b", "side")
        self.side = repo.commit("docs: more", {"README.md": "hello\nworld\n"}, author=CAROL, date=at(40))
        repo.git("checkout", "-q", "main")
        self.docs = repo.commit("add notes", {"docs/notes.md": "n\n"}, author=ALICE, date=at(41))
        when = at(42)
        repo.git("merge", "-q", "--no-ff", "-m", "merge side", "side",
                 env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        self.merge = repo.git("rev-parse", "HEAD")
        self.revert = repo.commit(f'Revert "add notes"\n\nThis reverts commit {self.docs}.\n',
                                  {"docs/notes.md": None}, author=ALICE, date=at(50))

    def run(self, capsys, *args: str) -> tuple[int, str, str]:
        code = main([*args, "--repo", str(self.repo.path)])
        out, err = capsys.readouterr()
        return code, out, err

    def json(self, capsys, *args: str, schema: str) -> dict:
        code, out, err = self.run(capsys, *args, "--format", "json")
        assert code == 0, err
        data = json.loads(out)
        jsonschema.validate(data, SCHEMAS[schema])
        return data


@pytest.fixture
def project(repo, capsys) -> Project:
    p = Project(repo)
    code, _, err = p.run(capsys, "index", "--no-graph", "-q")
    assert code == 0, err
    return p


def test_docs_have_a_schema_per_command():
    assert set(SCHEMAS) == {"owners", "show", "links"}
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


# -- owners --------------------------------------------------------------------------------------

def test_owners_of_a_file(project, capsys):
    data = project.json(capsys, "owners", "src/app.py", schema="owners")
    assert (data["path"], data["kind"], data["at"]) == ("src/app.py", "file", project.revert)
    assert data["codeowners"] == {"file": ".github/CODEOWNERS", "owners": ["@org/backend"], "rules": [
        {"pattern": "/src/", "owners": ["@org/backend"], "line": 2, "section": None}]}
    people = [(o["email"], o["commits"]) for o in data["history"]["owners"]]
    assert people == [("carol@example.com", 1), ("bob@example.com", 1), ("alice@example.com", 1)]
    assert data["history"]["now"] == T0 + 50 * DAY and data["history"]["half_life_days"] == 180


def test_owners_text(project, capsys):
    code, out, err = project.run(capsys, "owners", "src/app.py")
    assert code == 0 and err == ""
    assert "src/app.py (file) at HEAD" in out
    assert "CODEOWNERS (.github/CODEOWNERS): @org/backend" in out
    assert ".github/CODEOWNERS:2: /src/ @org/backend" in out
    for name in ("Alice", "Bob", "Carol"):
        assert name in out


def test_owners_of_a_directory_with_or_without_slash(project, capsys):
    with_slash = project.json(capsys, "owners", "src/", schema="owners")
    without = project.json(capsys, "owners", "src", schema="owners")
    assert with_slash == without
    assert with_slash["kind"] == "directory" and with_slash["codeowners"]["owners"] == ["@org/backend"]
    assert {o["email"] for o in with_slash["history"]["owners"]} == {
        "alice@example.com", "bob@example.com", "carol@example.com"}
    root = project.json(capsys, "owners", ".", schema="owners")
    assert (root["path"], root["kind"], root["codeowners"]["owners"]) == ("", "directory", ["@org/everyone"])


def test_owners_follows_renames_and_older_revisions(project, capsys):
    helpers = project.json(capsys, "owners", "src/helpers.py", schema="owners")
    assert {o["email"] for o in helpers["history"]["owners"]} == {"alice@example.com", "bob@example.com"}
    old = project.json(capsys, "owners", "src/util.py", "--at", project.base, schema="owners")
    assert old["kind"] == "file" and old["at"] == project.base
    assert [o["email"] for o in old["history"]["owners"]] == ["alice@example.com"]


def test_owners_of_a_deleted_file_and_from_a_subdirectory(project, capsys, monkeypatch):
    gone = project.json(capsys, "owners", "docs/notes.md", schema="owners")
    assert gone["kind"] == "file" and gone["codeowners"]["owners"] == ["@org/docs"]
    monkeypatch.chdir(project.repo.path / "src")
    code, out, _ = project.run(capsys, "owners", "app.py", "--format", "json")  # relative to the cwd
    assert code == 0 and json.loads(out)["path"] == "src/app.py"


def test_owners_of_an_unknown_path(project, capsys):
    code, out, err = project.run(capsys, "owners", "src/nope.py")
    assert code == 20 and out == ""
    assert err.strip() == (
        f"rcahook: error: 'src/nope.py' is not in the repository at {project.revert[:12]} and no indexed "
        "commit changed it; give a path relative to the repository root, try another --at revision, or "
        "run `rcahook index` if it is recent")
    assert project.run(capsys, "owners", "src/app.py", "--at", "nope")[0] == 12


def test_owners_without_codeowners(make_repo, capsys):
    repo = make_repo()
    repo.commit("one", {"a.py": "x\n"}, author=ALICE)
    assert main(["index", "--repo", str(repo.path), "--no-graph", "-q"]) == 0
    assert main(["owners", "a.py", "--repo", str(repo.path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["codeowners"] == {"file": None, "owners": [], "rules": []}
    assert main(["owners", "a.py", "--repo", str(repo.path)]) == 0
    assert "CODEOWNERS: none at this revision" in capsys.readouterr().out


# -- show ----------------------------------------------------------------------------------------

def test_show_json(project, capsys):
    data = project.json(capsys, "show", project.culprit, schema="show")
    assert data["sha"] == project.culprit and data["parents"] == [project.base]
    assert data["author"] == {"name": "Bob", "email": "bob@example.com", "time": T0 + 10 * DAY, "offset": 0,
                              "date": "2024-01-11T00:00:00+00:00"}
    assert (data["subject"], data["body"], data["trailers"]) == ("[perf] serve: cache responses", "Faster.", [])
    assert data["stats"] == {"files": 2, "added": 1, "deleted": 1}
    files = {f["path"]: f for f in data["files"]}
    assert files["src/app.py"]["hunks"] == [{"old_start": 2, "old_lines": 1, "new_start": 2, "new_lines": 1}]
    assert (files["logo.png"]["binary"], files["logo.png"]["hunks"]) == (True, [])
    owners = {f["path"]: f for f in data["owners"]["files"]}
    assert owners["src/app.py"]["codeowners"] == ["@org/backend"]
    assert owners["src/app.py"]["rule"]["line"] == 2
    assert [o["email"] for o in owners["src/app.py"]["history"]] == ["alice@example.com"]  # before it
    assert owners["logo.png"]["codeowners"] == ["@org/everyone"] and owners["logo.png"]["history"] == []
    assert data["links"]["fixes"] == [] and data["links"]["reverts"] == []
    assert data["links"]["fixed_by"] == [{
        "fix": project.fix, "culprit": project.culprit, "kind": "fixes", "ref": project.culprit[:12],
        "status": "resolved", "subject": "serve: fix stale cache"}]


def test_show_fix_links_and_trailers(project, capsys):
    data = project.json(capsys, "show", "HEAD~4", schema="show")  # any revision name works
    assert data["sha"] == project.fix
    assert data["trailers"] == [["Fixes", f'{project.culprit[:12]} ("[perf] serve: cache responses")'],
                                ["Fixes", "0123456789abc"], ["Reviewed-by", "Carol <carol@example.com>"]]
    assert [(x["kind"], x["ref"], x["culprit"], x["status"], x["subject"]) for x in data["links"]["fixes"]] == [
        ("fixes", project.culprit[:12], project.culprit, "resolved", "[perf] serve: cache responses"),
        ("fixes", "0123456789abc", None, "unknown", None)]
    history = data["owners"]["files"][0]["history"]
    assert [o["email"] for o in history] == ["bob@example.com", "alice@example.com"]


def test_show_revert_rename_and_merge(project, capsys):
    docs = project.json(capsys, "show", project.docs, schema="show")
    assert [x["fix"] for x in docs["links"]["reverted_by"]] == [project.revert]
    revert = project.json(capsys, "show", "main", schema="show")
    assert [(x["culprit"], x["subject"]) for x in revert["links"]["reverts"]] == [(project.docs, "add notes")]
    rename = project.json(capsys, "show", project.rename, schema="show")
    assert [(f["status"], f["old_path"], f["path"]) for f in rename["files"]] == [
        ("R", "src/util.py", "src/helpers.py")]
    # owners before the rename, under the old name
    assert [o["email"] for o in rename["owners"]["files"][0]["history"]] == ["alice@example.com"]
    merge = project.json(capsys, "show", project.merge, schema="show")
    assert merge["parents"] == [project.docs, project.side] and merge["files"] == []


def test_show_text(project, capsys):
    code, out, err = project.run(capsys, "show", project.fix)
    assert code == 0 and err == ""
    assert f"commit {project.fix}" in out
    assert "Carol <carol@example.com>  2024-01-21T00:00:00+00:00" in out
    assert "serve: fix stale cache" in out and "Reviewed-by: Carol" in out
    assert "-2,1 +2,1" in out
    assert f"fixes {project.culprit[:12]}" in out and "[perf] serve: cache responses" in out
    assert "fixes 0123456789abc (fixes, unknown)" in out
    code, out, _ = project.run(capsys, "show", project.culprit)
    assert "[perf] serve: cache responses" in out  # brackets are text, not markup
    assert "binary" in out and f"fixed by {project.fix[:12]}" in out
    assert "merge commit" in project.run(capsys, "show", project.merge)[1]
    assert "Author:    Alice <alice@example.com>  2024-01-01T02:00:00+02:00" in project.run(
        capsys, "show", project.base)[1]


def test_show_errors(project, capsys):
    code, out, err = project.run(capsys, "show", "nope")
    assert code == 12 and out == "" and "unknown revision 'nope'" in err
    new = project.repo.commit("not indexed yet", {"a": "1\n"})
    code, out, err = project.run(capsys, "show", "HEAD")
    assert code == 20 and out == ""
    assert err.strip().startswith(f"rcahook: error: commit 'HEAD' ({new[:12]}) is not in the index; "
                                  "run `rcahook index`")


def test_show_touched_definitions(repo, capsys):
    repo.commit("add", {"m.py": "def keep():\n    return 1\n\n\ndef edit():\n    return 1\n"})
    sha = repo.commit("edit", {"m.py": "def keep():\n    return 1\n\n\ndef edit():\n    return 2\n"})
    assert main(["index", "--repo", str(repo.path), "-q"]) == 0
    assert main(["show", sha, "--repo", str(repo.path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, SCHEMAS["show"])
    assert data["touched_done"] and {t["name"] for t in data["touched"]} == {"edit"}
    assert main(["show", sha, "--repo", str(repo.path)]) == 0
    assert "m.py: edit (function" in capsys.readouterr().out


# -- links ---------------------------------------------------------------------------------------

def test_links_json_and_filters(project, capsys):
    data = project.json(capsys, "links", schema="links")
    assert data["count"] == 3
    assert [(x["fix"], x["kind"], x["ref"], x["status"], x["culprit"]) for x in data["links"]] == [
        (project.fix, "fixes", project.culprit[:12], "resolved", project.culprit),
        (project.fix, "fixes", "0123456789abc", "unknown", None),
        (project.revert, "revert", project.docs, "resolved", project.docs),
    ]
    assert data["links"][0]["fix_subject"] == "serve: fix stale cache"
    assert data["links"][0]["culprit_subject"] == "[perf] serve: cache responses"
    reverts = project.json(capsys, "links", "--kind", "revert", schema="links")
    assert [x["kind"] for x in reverts["links"]] == ["revert"]
    both = project.json(capsys, "links", "--kind", "revert", "--kind", "fixes", schema="links")
    assert both["count"] == 3
    unresolved = project.json(capsys, "links", "--unresolved", schema="links")
    assert [x["ref"] for x in unresolved["links"]] == ["0123456789abc"]
    assert project.json(capsys, "links", "--kind", "regression", schema="links") == {"count": 0, "links": []}


def test_links_text(project, capsys):
    code, out, err = project.run(capsys, "links")
    assert code == 0 and err == ""
    assert project.fix[:12] in out and project.culprit[:12] in out and "unknown" in out
    assert "3 link(s), 1 unresolved" in out
    assert "no culprit links match" in project.run(capsys, "links", "--kind", "regression")[1]
    code, _, err = project.run(capsys, "links", "--kind", "nope")
    assert code == 2 and "nope" in err
