from __future__ import annotations

import pytest

from rcahook.index.links import LinkRef, ShaResolver, find_references

A = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0"


@pytest.mark.parametrize("body, kind, ref", [
    ('Fixes: a1b2c3d4e5f6 ("parser: handle empty input")', "fixes", "a1b2c3d4e5f6"),
    ("Fixes: commit a1b2c3d", "fixes", "a1b2c3d"),
    ("fixes:a1b2c3d4", "fixes", "a1b2c3d4"),
    ("Regression in a1b2c3d4e5", "regression", "a1b2c3d4e5"),
    ("This regressed since commit a1b2c3d", "regression", "a1b2c3d"),
    ("Bug introduced by commit a1b2c3d4e5f6.", "introduced", "a1b2c3d4e5f6"),
    ("Broken in A1B2C3D4", "introduced", "a1b2c3d4"),
    (f"This reverts commit {A}.", "revert", A),
])
def test_each_pattern(body, kind, ref):
    assert find_references("subject", body) == [LinkRef(0, kind, ref)]


@pytest.mark.parametrize("body", [
    "Fixes: a1b2c3",  # six hex digits: too short to be a sha
    "Fixes #1234",
    "  Fixes: a1b2c3d4",  # not at the start of a line
    "Fixes: a1b2c3d4zz",  # not a word boundary
    "introduced in version 2.3",
    "See a1b2c3d4e5 for details",
])
def test_not_references(body):
    assert find_references("subject", body) == []


def test_order_body_before_subject_pattern_order_then_reverts():
    body = ("This reverts commit bbbbbbbbbb.\n\nIntroduced by cccccccccc\n"
            "Fixes: dddddddddd\nFixes: eeeeeeeeee")
    refs = find_references("Regression in ffffffffff", body)
    assert [(r.seq, r.kind, r.ref) for r in refs] == [
        (0, "fixes", "dddddddddd"),
        (1, "fixes", "eeeeeeeeee"),
        (2, "introduced", "cccccccccc"),
        (3, "regression", "ffffffffff"),
        (4, "revert", "bbbbbbbbbb"),
    ]


def test_revert_only_in_body():
    assert find_references(f"This reverts commit {A}", "") == []


def test_resolver_resolved_unknown_ambiguous():
    shas = ["abcdef0" + "1" * 33, "abcdef0" + "2" * 33, "1234567" + "0" * 33]
    resolver = ShaResolver(shas)
    assert resolver.resolve("1234567") == ("resolved", shas[2])
    assert resolver.resolve("ABCDEF01") == ("resolved", shas[0])  # case does not matter
    assert resolver.resolve(shas[1]) == ("resolved", shas[1])
    assert resolver.resolve("abcdef0") == ("ambiguous", None)  # two commits share the prefix
    assert resolver.resolve("fedcba9") == ("unknown", None)
    assert resolver.resolve("abcdef0" + "3" * 33) == ("unknown", None)


def test_resolver_empty():
    assert ShaResolver([]).resolve("abcdef0") == ("unknown", None)
