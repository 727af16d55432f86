"""CODEOWNERS files, GitHub and GitLab flavours: who owns a path.

Patterns follow the gitignore-like rules GitHub documents: `*` and `?` stay within one
path component, `**` spans any number of directories, a leading or inner `/` anchors the
pattern to the repository root (otherwise it matches at any depth), a trailing `/`
matches a directory and everything under it, a pattern without one matches a file or
a directory and everything under it, and `dir/*` matches only the direct children of
`dir`. `\\#` starts a pattern with `#`, `\\ ` is a space in a pattern, `[abc]` is a
character class, `#` after the owners begins a comment. A rule without owners unsets
ownership (GitHub).

GitLab additions: `[Section]`, `^[Optional section]`, `[Section][2]` (approvals), default
owners after the header (`[Section] @owner`, used by rules of the section that list
none), `@@role` owners, and `!pattern` exclusions (a path matched by an exclusion has no
owner in that section, wherever the exclusion stands in it). Sections are evaluated
separately - the last matching rule of each section - and the owners of all sections
that match are combined; rules before the first header form an unnamed section.
Headers that differ only in case are one section.

The pypi `codeowners` package was considered: it reads `[Section][2]` and
`[Section] @owner` headers as patterns and applies last-match-wins across sections,
so GitLab files come out wrong.

Invalid lines (an owner that is not `@name`, `@org/team` or an email address, an
unterminated `[`) are skipped, as GitHub does, and listed in `CodeOwners.errors`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

CODEOWNERS_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")


@dataclass(frozen=True)
class Rule:
    pattern: str  # as written, escapes included, without a leading "!"
    owners: tuple[str, ...]  # as written; a GitLab section's default owners when the line has none
    line: int  # 1-based line number in the file
    section: str | None  # GitLab section name as first written; None before any header
    exclude: bool = False  # GitLab "!pattern": matching paths have no owner in this section

    def to_json(self) -> dict:
        """As `rcahook owners` and `rcahook show` print it."""
        return {"pattern": ("!" if self.exclude else "") + self.pattern, "owners": list(self.owners),
                "line": self.line, "section": self.section}


@dataclass(frozen=True)
class Section:
    name: str
    optional: bool = False  # "^[Section]": approval is optional
    approvals: int = 1  # "[Section][2]"
    default_owners: tuple[str, ...] = ()


_SECTION = re.compile(r"^(?P<optional>\^)?\[(?P<name>[^\]]+)\](?:\[(?P<approvals>\d+)\])?(?:\s+(?P<owners>.*))?$")
_OWNER = re.compile(r"^(?:@@?[\w.\-]+(?:/[\w.\-]+)*|[^@\s]+@[^@\s]+\.[^@\s]+)$")


class CodeOwners:
    def __init__(self, rules: list[tuple[Rule, re.Pattern[str]]], sections: dict[str | None, Section],
                 *, source: str, errors: tuple[str, ...]):
        self.source = source
        self.errors = errors
        self.sections = sections  # by folded name; None is the unnamed leading section
        self._compiled = rules
        self.rules = tuple(rule for rule, _ in rules)

    @classmethod
    def parse(cls, text: str, *, source: str = "CODEOWNERS") -> CodeOwners:
        rules: list[tuple[Rule, re.Pattern[str]]] = []
        sections: dict[str | None, Section] = {}
        errors: list[str] = []
        section: Section | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            header = _SECTION.match(line)
            if header and not header.group("name").isspace():
                section = _section(header, sections)
                continue
            tokens = _split(line)
            pattern, owners = tokens[0], []
            for token in tokens[1:]:
                if token.startswith("#"):
                    break
                owners.append(token)
            bad = [o for o in owners if not _OWNER.match(o)]
            if bad:
                errors.append(f"{source}:{number}: {bad[0]!r} is not an owner (@user, @org/team "
                              f"or an email address); line skipped")
                continue
            exclude = pattern.startswith("!")
            if exclude:
                pattern = pattern[1:]
            try:
                regex = compile_pattern(pattern)
            except ValueError as exc:
                errors.append(f"{source}:{number}: {exc}; line skipped")
                continue
            if not owners and section is not None and not exclude:
                owners = list(section.default_owners)
            name = section.name if section else None
            rules.append((Rule(pattern, tuple(owners), number, name, exclude), regex))
        return cls(rules, sections, source=source, errors=tuple(errors))

    def owners_of(self, path: str) -> tuple[str, ...]:
        """Owners of `path`: the last matching rule's (GitHub), or with GitLab sections the
        last matching rule of every section combined, in file order, without repeats."""
        owners: dict[str, None] = {}
        for rule in self.rules_for(path):
            owners.update(dict.fromkeys(rule.owners))
        return tuple(owners)

    def rule_for(self, path: str) -> Rule | None:
        """The last rule in the file that matches `path` (exclusions included), or None."""
        path = _normalize(path)
        for rule, regex in reversed(self._compiled):
            if regex.match(path):
                return rule
        return None

    def rules_for(self, path: str) -> tuple[Rule, ...]:
        """The deciding rule of each section that has one for `path`, in file order.

        Without GitLab sections this is at most the one rule `rule_for` returns. A
        section with a matching exclusion contributes nothing.
        """
        path = _normalize(path)
        winners: dict[str | None, Rule] = {}
        excluded: set[str | None] = set()
        for rule, regex in self._compiled:
            if regex.match(path):
                key = _fold(rule.section)
                if rule.exclude:
                    excluded.add(key)
                else:
                    winners[key] = rule
        chosen = [rule for key, rule in winners.items() if key not in excluded]
        return tuple(sorted(chosen, key=lambda rule: rule.line))


def find_codeowners(read: Callable[[str], bytes | None]) -> CodeOwners | None:
    """The first CODEOWNERS file found in CODEOWNERS_LOCATIONS, or None.

    `read(path)` returns a file's content at the revision under study, or None.
    """
    for location in CODEOWNERS_LOCATIONS:
        content = read(location)
        if content is not None:
            return CodeOwners.parse(content.decode("utf-8-sig", errors="replace"), source=location)
    return None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A regex whose `match` tells whether a repository path (no leading `/`) is covered."""
    dir_only = pattern.endswith("/") and not pattern.endswith("\\/")
    body = pattern.rstrip("/") if dir_only else pattern
    # A "/" at the start or in the middle anchors to the root; a trailing one does not.
    anchored = "/" in body
    body = body.lstrip("/")
    if not body:
        raise ValueError(f"pattern {pattern!r} names no path")
    children_only = body.endswith("/*") and not body.endswith("\\/*")
    regex = _translate(body, pattern)
    prefix = "" if anchored else "(?:.*/)?"
    if dir_only:
        suffix = "/.*"
    elif children_only:
        suffix = ""  # "docs/*": direct children only, as GitHub documents
    else:
        suffix = "(?:/.*)?"
    return re.compile(prefix + regex + suffix + r"\Z", re.DOTALL)


def _translate(body: str, pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(body[i + 1]))
            i += 2
        elif body.startswith("**", i):
            at_start = i == 0 or body[i - 1] == "/"
            at_end = i + 2 == n or body[i + 2] == "/"
            if at_start and at_end:
                if i + 2 == n:
                    out.append(".*")  # "dir/**": everything below
                    i += 2
                else:
                    out.append("(?:.*/)?")  # "**/" and "/**/": zero or more directories
                    i += 3
            else:
                out.append("[^/]*")
                i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = body.find("]", i + 2 if body[i + 1:i + 2] in ("!", "^", "]") else i + 1)
            if end == -1:
                raise ValueError(f"unterminated character class '[' in pattern {pattern!r}")
            content = body[i + 1:end]
            negate = content[:1] in ("!", "^")
            if negate:
                content = content[1:]
            content = content.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[^/{content}]" if negate else f"[{content}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


def _split(line: str) -> list[str]:
    """Whitespace-separated tokens; `\\ ` keeps a space inside the pattern."""
    tokens: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            current.append(line[i:i + 2])
            i += 2
            continue
        if ch.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _section(header: re.Match[str], sections: dict[str | None, Section]) -> Section:
    name = header.group("name").strip()
    owners = tuple(header.group("owners").split()) if header.group("owners") else ()
    existing = sections.get(name.lower())
    section = Section(
        # The first spelling names the section; later headers may change its settings.
        name=existing.name if existing else name,
        optional=bool(header.group("optional")),
        approvals=int(header.group("approvals") or 1),
        default_owners=owners,
    )
    sections[name.lower()] = section
    return section


def _fold(name: str | None) -> str | None:
    return name.lower() if name is not None else None


def _normalize(path: str) -> str:
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")
