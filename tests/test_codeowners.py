from __future__ import annotations

import pytest

from rcahook.index.codeowners import (
    CODEOWNERS_LOCATIONS,
    CodeOwners,
    Rule,
    Section,
    compile_pattern,
    find_codeowners,
)

# --- pattern semantics -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("*", ["README", "a/b/c.txt", ".gitignore"], []),
        ("**", ["README", "a/b/c.txt"], []),
        ("*.js", ["app.js", "src/ui/app.js", ".eslintrc.js"], ["app.jsx", "app.ts"]),
        ("/build/logs/", ["build/logs/a.log", "build/logs/deep/b.log"], ["x/build/logs/a.log", "build/logs"]),
        ("apps/", ["apps/a.rb", "deep/apps/b/c.rb"], ["apps", "myapps/a.rb"]),
        ("docs/*", ["docs/getting-started.md"], ["docs/build-app/troubleshooting.md", "x/docs/a.md"]),
        ("/docs/*", ["docs/a.md"], ["docs/a/b.md"]),
        ("**/logs", ["logs/a", "build/logs/a", "deeply/nested/logs/x/y"], ["logsx/a", "catalogs/a"]),
        ("/scripts", ["scripts", "scripts/run.sh"], ["tools/scripts/run.sh", "scripts.sh"]),
        ("scripts", ["scripts", "tools/scripts/run.sh"], ["scripts.sh"]),
        ("src/**/test_*.py", ["src/test_a.py", "src/a/b/test_c.py"], ["test_a.py", "src/a/b/c.py"]),
        ("lib/**", ["lib/a", "lib/a/b"], ["lib", "x/lib/a"]),
        ("a/**/b", ["a/b", "a/x/b", "a/x/y/b/z"], ["a/xb"]),
        ("foo**bar", ["foobar", "fooxbar"], ["foo/bar"]),
        ("ip/*.c", ["ip/ip.c"], ["ip/sub/ip.c", "x/ip/ip.c"]),
        ("file?.txt", ["file1.txt", "a/fileX.txt"], ["file10.txt", "file/.txt"]),
        ("[Dd]ocs/", ["docs/a", "Docs/a"], ["xdocs/a"]),
        ("log[!s]/", ["logx/a"], ["logs/a", "log//a"]),
        ("\\#notes.txt", ["#notes.txt", "a/#notes.txt"], ["notes.txt"]),
        ("a\\ b.txt", ["a b.txt"], ["a\\ b.txt"]),
        ("Makefile", ["Makefile", "src/Makefile"], ["makefile"]),  # case-sensitive
        ("/", [], ["a"]),
    ],
)
def test_pattern_semantics(pattern, matches, misses):
    if pattern == "/":
        with pytest.raises(ValueError):
            compile_pattern(pattern)
        return
    regex = compile_pattern(pattern)
    for path in matches:
        assert regex.match(path), f"{pattern!r} should match {path!r}"
    for path in misses:
        assert not regex.match(path), f"{pattern!r} should not match {path!r}"


def test_unterminated_character_class():
    with pytest.raises(ValueError, match="unterminated"):
        compile_pattern("src/[abc")


# --- GitHub ----------------------------------------------------------------------------

GITHUB = """\
# Owners of everything not listed below.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes precedence.
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/* docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github

\\#hash.md @hash-owner
bad/ @ok not-an-owner
"""


@pytest.fixture
def github() -> CodeOwners:
    return CodeOwners.parse(GITHUB, source=".github/CODEOWNERS")


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("README.md", ("@global-owner1", "@global-owner2")),
        ("src/app.js", ("@js-owner",)),
        ("cmd/main.go", ("docs@example.com",)),
        ("notes.txt", ("@octo-org/octocats",)),
        ("build/logs/x.txt", ("@octocat",)),  # **/logs comes after /build/logs/
        ("docs/getting-started.md", ("@doctocat",)),
        ("docs/build-app/troubleshooting.md", ("@doctocat",)),
        ("scripts/deploy.sh", ("@doctocat", "@octocat")),
        ("apps/web/index.rb", ("@octocat",)),
        ("apps/github/app.rb", ()),  # a rule without owners unsets them
        ("#hash.md", ("@hash-owner",)),
        ("bad/x", ("@global-owner1", "@global-owner2")),  # invalid line skipped
        ("./src/app.js", ("@js-owner",)),
        ("/src/app.js", ("@js-owner",)),
    ],
)
def test_github_owners(github, path, owners):
    assert github.owners_of(path) == owners


def test_github_rule_for_and_errors(github):
    rule = github.rule_for("apps/github/app.rb")
    assert rule == Rule(pattern="/apps/github", owners=(), line=15, section=None)
    assert github.rule_for("src/app.js").owners == ("@js-owner",)
    assert github.rules_for("src/app.js") == (github.rule_for("src/app.js"),)
    assert github.errors == (
        ".github/CODEOWNERS:18: 'not-an-owner' is not an owner (@user, @org/team or an email "
        "address); line skipped",
    )
    assert github.sections == {}


def test_no_rule_matches():
    owners = CodeOwners.parse("/docs/ @docs\n")
    assert owners.owners_of("src/x.c") == ()
    assert owners.rule_for("src/x.c") is None
    assert owners.rules_for("src/x.c") == ()


def test_empty_file():
    owners = CodeOwners.parse("\n# nothing here\n\n")
    assert owners.rules == () and owners.owners_of("x") == ()


# --- GitLab ----------------------------------------------------------------------------

GITLAB = """\
# Required for all files
* @general-approvers

[Documentation][2] @docs-team
docs/
README.md
*.txt @tech-writers

^[Database] @database-team
model/db/
config/db/database-setup.md @docs-team

[Backend]
*.rb @ruby-owner @group/with-nested/subgroup
app/models/ @@maintainer

[documentation]
ee/docs/ @product-team
"""


@pytest.fixture
def gitlab() -> CodeOwners:
    return CodeOwners.parse(GITLAB, source="CODEOWNERS")


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("lib/x.c", ("@general-approvers",)),
        ("docs/index.md", ("@general-approvers", "@docs-team")),
        ("README.md", ("@general-approvers", "@docs-team")),
        ("notes.txt", ("@general-approvers", "@tech-writers")),
        ("model/db/schema.rb", ("@general-approvers", "@database-team", "@ruby-owner", "@group/with-nested/subgroup")),
        ("config/db/database-setup.md", ("@general-approvers", "@docs-team")),
        ("app/models/user.rb", ("@general-approvers", "@@maintainer")),
        ("ee/docs/a.md", ("@general-approvers", "@product-team")),
    ],
)
def test_gitlab_sections_combine(gitlab, path, owners):
    assert gitlab.owners_of(path) == owners


def test_gitlab_sections_parsed(gitlab):
    assert gitlab.sections == {
        "documentation": Section("Documentation", optional=False, approvals=1, default_owners=()),
        "database": Section("Database", optional=True, approvals=1, default_owners=("@database-team",)),
        "backend": Section("Backend"),
    }
    rule = gitlab.rule_for("docs/index.md")
    assert rule == Rule(pattern="docs/", owners=("@docs-team",), line=5, section="Documentation")
    # "[documentation]" continues the "Documentation" section, under its first spelling.
    assert gitlab.rule_for("ee/docs/a.md").section == "Documentation"
    assert [r.line for r in gitlab.rules_for("model/db/schema.rb")] == [2, 10, 14]


def test_gitlab_section_settings():
    owners = CodeOwners.parse("[Docs][3] @a @b\ndocs/\n^[Ops]\nops/\n")
    assert owners.sections["docs"] == Section("Docs", approvals=3, default_owners=("@a", "@b"))
    assert owners.sections["ops"] == Section("Ops", optional=True)
    assert owners.owners_of("docs/x") == ("@a", "@b")
    assert owners.owners_of("ops/x") == ()


def test_gitlab_last_match_within_a_section():
    owners = CodeOwners.parse("[Web]\n*.js @a\nsrc/ @b\n[Api]\n*.js @c\n")
    assert owners.owners_of("src/x.js") == ("@b", "@c")


def test_gitlab_exclusions_apply_to_their_section_wherever_they_stand():
    text = "* @default-owner\n!pom.xml\n!generated/\n[Build] @build\npom.xml\n"
    owners = CodeOwners.parse(text)
    assert owners.owners_of("pom.xml") == ("@build",)
    assert owners.owners_of("generated/a.java") == ()
    assert owners.owners_of("src/a.java") == ("@default-owner",)
    assert owners.rule_for("generated/a.java").exclude
    # order within the section does not matter
    assert CodeOwners.parse("!pom.xml\n* @x\n").owners_of("pom.xml") == ()


def test_character_class_pattern_is_not_a_section():
    owners = CodeOwners.parse("[Dd]ocs/ @docs\n")
    assert owners.sections == {}
    assert owners.owners_of("Docs/a.md") == ("@docs",)


def test_unterminated_class_line_is_skipped():
    owners = CodeOwners.parse("* @a\nsrc/[abc @b\n")
    assert owners.owners_of("src/[abc") == ("@a",)
    assert owners.errors == ("CODEOWNERS:2: unterminated character class '[' in pattern 'src/[abc'; line skipped",)


# --- find_codeowners -------------------------------------------------------------------


def test_locations_order():
    assert CODEOWNERS_LOCATIONS == (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")


def test_find_codeowners_first_found_wins():
    files = {
        "CODEOWNERS": b"* @root\n",
        "docs/CODEOWNERS": b"* @docs\n",
        ".gitlab/CODEOWNERS": b"* @gitlab\n",
    }
    seen = []

    def read(path):
        seen.append(path)
        return files.get(path)

    found = find_codeowners(read)
    assert found is not None and found.source == "CODEOWNERS"
    assert found.owners_of("x") == ("@root",)
    assert seen == [".github/CODEOWNERS", "CODEOWNERS"]


def test_find_codeowners_gitlab_location_and_bom():
    found = find_codeowners({".gitlab/CODEOWNERS": b"\xef\xbb\xbf* @gitlab\n"}.get)
    assert found.source == ".gitlab/CODEOWNERS" and found.owners_of("a/b") == ("@gitlab",)


def test_find_codeowners_none():
    assert find_codeowners(lambda path: None) is None
