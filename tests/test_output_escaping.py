"""Commit messages, author names and file names are other people's text: the Markdown
rcahook writes for tickets never carries their HTML, links or images, and the terminal
never obeys their rich markup or escape sequences. A real repository with hostile commits,
the real CLI, and a real CommonMark renderer."""
from __future__ import annotations

import json

import pytest

from clirun import rcahook
from rcahook.untrusted import md_code, md_text, sarif_text, term_text

HOSTILE_SUBJECT = ("\x1b[31mred\x1b[0m <img src=x onerror=alert(1)> [click](https://evil.example) "
                   "![pixel](https://evil.example/p.png) [bold red]alarm[/bold red] *retry* `tick` a|b")
HOSTILE_AUTHOR = "Mal[b]lory</td><script>alert(2)</script> <mal@example.com>"
HOSTILE_PATH = "src/[x](https:evil.example)<b>retry</b>_x_.c"
TITLE = "retry alarm click evil red img onerror"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from conftest import GitRepo

    path = tmp_path_factory.mktemp("hostile") / "repo"
    path.mkdir()
    repo = GitRepo(path)
    repo.commit("Initial import", {"src/main.c": "int main(void) { return 0; }\n", "README": "hello\n"})
    for i in range(4):
        repo.commit(f"docs: note {i}", {"README": f"hello {i}\n"})
    culprit = repo.commit(HOSTILE_SUBJECT + "\n\nBody with <script>alert(3)</script> and [a](https://evil.example).\n",
                          {HOSTILE_PATH: "int retry_alarm(void) { return 1; }\n"}, author=HOSTILE_AUTHOR)
    repo.commit("main: tidy", {"src/main.c": "int main(void) { return 1; }\n"})
    result = rcahook("index", "--repo", str(path), "--quiet")
    assert result.code == 0, result.err
    repo.culprit = culprit
    return repo


def investigate(repo, *args: str):
    result = rcahook("investigate", "--repo", str(repo.path), "--title", TITLE, "--impacted-path", HOSTILE_PATH,
                     "--time", "2024-01-02T00:00:00Z", "--since", "30d", "--no-update", "--no-save",
                     "--min-confidence", "0", *args)
    assert result.code == 0, result.err
    return result.out


def html_of(markdown: str) -> str:
    import markdown_it
    return markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)


def test_investigate_markdown_carries_no_html_links_or_images(hostile):
    md = investigate(hostile, "--format", "markdown")
    assert hostile.culprit[:12] in md  # the hostile commit is among the suggestions
    assert "<img" not in md and "<script" not in md and "<b>" not in md
    assert "](https://evil.example)" not in md and "](https:evil.example)" not in md
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in md  # shown as text
    html = html_of(md)
    for tag in ("<img", "<a ", "<script", "<b>", "<em>retry"):
        assert tag not in html, tag
    assert "&lt;img src=x onerror=alert(1)&gt; [click](https://evil.example)" in html  # reads as written
    assert "\x1b" not in md


def test_markdown_table_keeps_its_columns(hostile):
    md = investigate(hostile, "--format", "markdown")
    header = "| # | Commit | Subject | Author | Landed | Share |"
    rows = [line for line in md.splitlines() if line.startswith("| ") and line != header]
    html = html_of(md)
    assert html.count("<tr>") == len(rows) + 1
    for row in html.split("<tr>")[2:]:
        assert row.count("<td>") == 6  # a pipe in a subject does not add a cell


def test_text_output_prints_markup_and_escapes_literally(hostile):
    out = investigate(hostile)
    assert "[bold red]alarm[/bold red]" in out  # rich markup shown, not applied
    assert "Mal[b]lory" in out
    assert "\x1b" not in out and "\\x1b[31mred" in out


def test_json_keeps_the_text_as_written(hostile):
    doc = json.loads(investigate(hostile, "--format", "json"))
    subjects = [s["subject"] for s in doc["suggestions"]]
    assert HOSTILE_SUBJECT in subjects  # escaping is the renderers' job, not the data's


def test_show_prints_markup_and_escapes_literally(hostile):
    result = rcahook("show", hostile.culprit, "--repo", str(hostile.path))
    assert result.code == 0, result.err
    assert "[bold red]alarm[/bold red]" in result.out and "Mal[b]lory" in result.out
    assert "<b>retry</b>" in result.out  # the file name, as written
    assert "\x1b" not in result.out and "\\x1b[31mred" in result.out


def test_scan_text_shows_escapes_instead_of_obeying_them(hostile):
    first = hostile.git("rev-list", "--max-parents=0", "HEAD")
    result = rcahook("scan", "--repo", str(hostile.path), "--from", first, "--to", "HEAD")
    assert result.code == 0, result.err
    assert "\\x1b[31mred\\x1b[0m <img" in result.out and "\x1b" not in result.out


# -- the helpers, on the cases that matter -------------------------------------------------------

@pytest.mark.parametrize("text", [
    "<img src=x onerror=alert(1)>", "[click](https://evil.example)", "![p](https://evil.example/x.png)",
    "<https://evil.example>", "*bold* _it_ ~~gone~~ `code`", "a | b", "line\nbreak", "[ref]: https://evil.example",
    "&lt;img src=x&gt;",
])
def test_md_text_renders_as_the_same_text(text):
    html = html_of("| a |\n|---|\n| " + md_text(text) + " |\n\n" + md_text(text) + "\n")
    for tag in ("<img", "<a ", "<em>", "<strong>", "<code>", "<del>", "<br"):
        assert tag not in html, (text, html)
    assert html.count("<td>") == 1
    assert "\n" not in md_text(text)


def test_md_code_holds_backticks_and_pipes():
    assert md_code("git show abc") == "`git show abc`"
    assert md_code("a`b") == "``a`b``"
    html = html_of("| c |\n|---|\n| " + md_code("x`|`y", in_table=True) + " |\n")
    assert html.count("<td>") == 1 and "<code>x`|`y</code>" in html


def test_term_text_shows_control_characters():
    assert term_text("a\x1b[2Jb\rc\u202ed") == "a\\x1b[2Jb\\x0dc\\u202ed"
    assert term_text("two\nlines") == "two lines"
    assert term_text("two\r\nlines", newlines=True) == "two\nlines"


def test_sarif_text_escapes_embedded_links():
    assert sarif_text("see [here](1) or \\[x]") == "see \\[here\\](1) or \\\\\\[x\\]"
