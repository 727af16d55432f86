from __future__ import annotations

import subprocess

import pytest

from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.owners import (
    DEFAULT_WEIGHTING,
    OwnershipModel,
    Weighting,
    codeowners_for,
    history_owners,
    normalize_path,
)
from rcahook.index.reader import History

DAY = 86400
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
ALICE, BOB, CAROL = "Alice <alice@example.com>", "Bob <Bob@Example.com>", "Carol <carol@example.com>"


def at(days: float) -> str:
    return f"{int(T0 + days * DAY)} +0000"


def lines(n: int, tag: str = "x") -> str:
    return "".join(f"{tag}{i}\n" for i in range(n))


def indexed(repo) -> History:
    db = repo.path / ".git" / "rcahook" / "index.sqlite"
    index_repository(Repo(repo.path), db, graph=False)
    return History.open(db)


@pytest.fixture
def history(repo):
    """app/ by Alice then Bob, docs/ by Carol, a rename by Bob, all at known times."""
    repo.commit("app", {"app/main.py": lines(10), "app/util.py": lines(4)}, author=ALICE, date=at(0))
    repo.commit("docs", {"docs/index.md": lines(2)}, author=CAROL, date=at(10))
    repo.commit("tweak", {"app/main.py": lines(10, "y")}, author=BOB, date=at(180))
    repo.git("mv", "app/util.py", "app/helpers.py")
    repo.commit("rename", {}, author=BOB, date=at(190))
    repo.commit("sweep", {"app/main.py": lines(11, "y"), "app/helpers.py": lines(5), "docs/index.md": lines(3)},
                author=ALICE, date=at(360))
    h = indexed(repo)
    yield h
    h.close()


def test_weight_formula():
    w = DEFAULT_WEIGHTING
    assert w.weight(0, 0) == 1.0
    assert w.weight(180 * DAY, 0) == pytest.approx(0.5)
    assert w.weight(360 * DAY, 0) == pytest.approx(0.25)
    assert w.weight(0, 100) == pytest.approx(2.0)
    assert w.weight(0, 10_000) == pytest.approx(3.0)  # capped at 200 lines
    assert w.weight(-5 * DAY, 0) == 1.0  # a commit dated after `now` is not worth more
    assert Weighting(half_life_days=30).weight(30 * DAY, 0) == pytest.approx(0.5)


def test_normalize_path():
    assert normalize_path("./src/app.py") == ("src/app.py", False)
    assert normalize_path("src/") == ("src", True)
    assert normalize_path("/src") == ("src", False)
    assert normalize_path(".") == ("", True)
    assert normalize_path("") == ("", True)


def test_file_owners_weighted_toward_recent(history):
    now = T0 + 360 * DAY
    owners = history_owners(history, "app/main.py", now=now)
    assert [(o.name, o.email, o.commits) for o in owners] == [
        ("Alice", "alice@example.com", 2), ("Bob", "bob@example.com", 1)]
    # Alice: 10 lines a year ago, then 1 line today; Bob: 10+10 lines half a year ago
    alice = 0.25 * 1.10 + 1.0 * 1.01
    bob = 0.5 * 1.20
    assert owners[0].weight == pytest.approx(alice)
    assert owners[1].weight == pytest.approx(bob)
    assert owners[0].share == pytest.approx(alice / (alice + bob))
    assert sum(o.share for o in owners) == pytest.approx(1.0)
    assert owners[0].last_time == now and owners[1].last_time == T0 + 180 * DAY


def test_now_excludes_later_commits_and_exclude_skips_commits(history, repo):
    owners = history_owners(history, "app/main.py", now=T0 + 200 * DAY)
    assert [(o.email, o.commits) for o in owners] == [("bob@example.com", 1), ("alice@example.com", 1)]
    tweak = repo.git("log", "--format=%H", "--grep=^tweak")
    assert [o.email for o in history_owners(history, "app/main.py", now=T0 + 200 * DAY, exclude=[tweak])] == [
        "alice@example.com"]
    assert history_owners(history, "app/main.py", now=T0 - DAY) == []


def test_directory_counts_each_commit_once(history):
    now = T0 + 360 * DAY
    owners = {o.email: o for o in history_owners(history, "app/", now=now)}
    assert set(owners) == {"alice@example.com", "bob@example.com"}
    # "app" commit: main.py 10 + util.py 4 lines = one commit of 14 lines
    # "sweep": main.py 1, helpers.py 1 = one commit of 2 lines
    assert owners["alice@example.com"].commits == 2
    assert owners["alice@example.com"].weight == pytest.approx(0.25 * 1.14 + 1.02)
    assert owners["bob@example.com"].commits == 2  # the tweak and the rename
    assert history_owners(history, "app", now=now) == list(owners.values())  # no trailing slash needed
    everyone = history_owners(history, "", now=now, limit=None)
    assert {o.email for o in everyone} == {"alice@example.com", "bob@example.com", "carol@example.com"}
    assert history_owners(history, "app/", now=now, limit=1) == [owners["alice@example.com"]]


def test_renames_are_followed_for_files(history, repo):
    now = T0 + 360 * DAY
    helpers = {o.email: o.commits for o in history_owners(history, "app/helpers.py", now=now)}
    # Alice created it as app/util.py; Bob renamed it; Alice changed it under the new name
    assert helpers == {"alice@example.com": 2, "bob@example.com": 1}
    assert {o.email: o.commits for o in history_owners(history, "app/util.py", now=now)} == {
        "alice@example.com": 1}
    rename = repo.git("log", "--format=%H", "--grep=^rename")
    # without the rename itself (as `show` asks), the old name's history still counts
    assert {o.email: o.commits for o in history_owners(history, "app/helpers.py", now=now, exclude=[rename])} == {
        "alice@example.com": 2}


def test_old_name_reused_after_a_rename(repo):
    repo.commit("add", {"a.py": lines(3)}, author=ALICE, date=at(0))
    repo.git("mv", "a.py", "b.py")
    repo.commit("rename", {}, author=BOB, date=at(1))
    repo.commit("new a", {"a.py": lines(2, "z")}, author=CAROL, date=at(2))
    h = indexed(repo)
    try:
        now = T0 + 3 * DAY
        assert {o.email for o in history_owners(h, "b.py", now=now)} == {"alice@example.com", "bob@example.com"}
        assert {o.email for o in history_owners(h, "a.py", now=now)} == {"alice@example.com", "carol@example.com"}
        model = OwnershipModel.build(h, (T0, now))
        assert model.owners_of("b.py").keys() == {"alice@example.com", "bob@example.com"}
    finally:
        h.close()


def test_emails_fold_case_and_names_follow_the_latest_commit(repo):
    repo.commit("one", {"f": "1\n"}, author="Dan Old <DAN@example.com>", date=at(0))
    repo.commit("two", {"f": "2\n"}, author="Dan New <dan@example.com>", date=at(1))
    h = indexed(repo)
    try:
        owners = history_owners(h, "f", now=T0 + 2 * DAY)
        assert [(o.name, o.email, o.commits) for o in owners] == [("Dan New", "dan@example.com", 2)]
    finally:
        h.close()


def test_ownership_model_matches_history_owners(history, repo):
    shas = repo.git("rev-list", "HEAD").split()
    now = T0 + 360 * DAY
    by_shas = OwnershipModel.build(history, shas)
    by_time = OwnershipModel.build(history, (T0, now))
    for path in ("app/main.py", "app/helpers.py", "app/util.py", "app/", "app", "docs/index.md", "docs/", ""):
        expected = {o.email: o.share for o in history_owners(history, path, now=now, limit=None)}
        for model in (by_shas, by_time):
            got = model.owners_of(path)
            assert got.keys() == expected.keys(), path
            assert got == pytest.approx(expected), path
            assert list(got) == list(expected), path  # largest share first
    assert by_shas.is_owner("ALICE@example.com", "app/main.py") == pytest.approx(
        by_shas.owners_of("app/main.py")["alice@example.com"])
    assert by_shas.is_owner("carol@example.com", "app/main.py") == 0.0
    assert by_shas.owners_of("nowhere.py") == {}
    assert by_shas.is_owner("alice@example.com", "nowhere/") == 0.0


def test_ownership_model_scope_limits_what_it_learns(history, repo):
    early = OwnershipModel.build(history, (T0, T0 + 100 * DAY))
    assert early.owners_of("app/main.py") == {"alice@example.com": 1.0}
    assert early.owners_of("docs/") == {"carol@example.com": 1.0}
    tweak = repo.git("log", "--format=%H", "--grep=^tweak")
    assert OwnershipModel.build(history, [tweak]).owners_of("app/") == {"bob@example.com": 1.0}
    assert OwnershipModel.build(history, []).owners_of("app/") == {}


# -- CODEOWNERS ------------------------------------------------------------------------------------

def test_codeowners_for_on_a_bare_clone(repo, tmp_path):
    repo.commit("one", {"src/app.py": "x\n", "docs/a.md": "a\n",
                        ".github/CODEOWNERS": "* @everyone\n/src/ @backend\n*.md @writers\n"})
    first = repo.git("rev-parse", "HEAD")
    repo.commit("two", {".github/CODEOWNERS": "* @everyone\n/src/ @platform\n"})
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    r = Repo(bare)
    owners, rule = codeowners_for(r, "HEAD", "src/app.py")
    assert owners == ("@platform",) and (rule.pattern, rule.line) == ("/src/", 2)
    assert codeowners_for(r, first, "src/app.py")[0] == ("@backend",)
    assert codeowners_for(r, first, "docs/a.md")[0] == ("@writers",)
    assert codeowners_for(r, "HEAD", "src/")[0] == ("@platform",)  # a directory, asked with its '/'
    assert codeowners_for(r, "HEAD", "README")[1].pattern == "*"


def test_codeowners_for_without_a_file(repo):
    repo.commit("one", {"a": "1\n"})
    assert codeowners_for(Repo(repo.path), "HEAD", "a") == ((), None)
