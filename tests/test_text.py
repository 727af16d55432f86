from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest

from rcahook import text
from rcahook.text import (
    BM25,
    component_prefix,
    identifier_tokens,
    split_identifier,
    strip_incident_title,
    tokenize,
)

# --- tokenize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "tokens"),
    [
        ("ip route: fix NULL deref in parse_rtattr_flags()",
         ["ip", "route", "fix", "null", "deref", "in", "parse", "rtattr", "flags"]),
        ("a b c", []),
        ("x86_64 IPv6 v2.1", ["x86", "64", "ipv6", "v2"]),
        ("mtest: don't crash", ["mtest", "don", "crash"]),
        ("Ünïcode café naïve", ["code", "caf", "na", "ve"]),
        ("", []),
        ("CamelCase HTTPServer", ["camelcase", "httpserver"]),
        ("1234 0x1f", ["1234", "0x1f"]),
    ],
)
def test_tokenize(source, tokens):
    assert tokenize(source) == tokens


def test_tokenize_matches_the_protocol_regex_on_random_text():
    rng = random.Random(7)
    alphabet = "abcXYZ019 _-.:/()\"'#\tÉßé\n"
    for _ in range(300):
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert tokenize(sample) == re.findall(r"[a-z0-9]{2,}", sample.lower())


# --- identifiers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("parse_rtattr_flags", ["parse", "rtattr", "flags"]),
        ("getHTTPResponse2", ["get", "http", "response2"]),
        ("HTTPServer", ["http", "server"]),
        ("utf8Decode", ["utf8", "decode"]),
        ("getIPv6Address", ["get", "ipv6", "address"]),
        ("Base64Encode", ["base64", "encode"]),
        ("MD5sum", ["md5", "sum"]),
        ("OAuth2Token", ["auth2", "token"]),
        ("x86_64", ["x86", "64"]),
        ("__init__", ["init"]),
        ("std::vector::push_back", ["std", "vector", "push", "back"]),
        ("MAX_RETRIES", ["max", "retries"]),
        ("a_b", []),
        ("", []),
        ("com.acme.PriceBook$Cache", ["com", "acme", "price", "book", "cache"]),
    ],
)
def test_split_identifier(name, parts):
    assert split_identifier(name) == parts


def test_identifier_tokens_whole_then_parts():
    assert identifier_tokens(["parse_rtattr_flags", "flags", "getX", "q"]) == [
        "parse_rtattr_flags", "parse", "rtattr", "flags",
        "flags",
        "getx", "get",
    ]
    assert identifier_tokens([]) == []


# --- strip_incident_title --------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "cleaned"),
    [
        ('ip: fix crash in ipaddr (regression from ("ip: add json output"))',
         "ip: fix crash in ipaddr (regression from )"),
        ('tc: fix flower parsing ("tc: add flower ct_state")', "tc: fix flower parsing"),
        ("tc: fix flower parsing ('tc: add flower ct_state')", "tc: fix flower parsing"),
        ('mtest: restore timeout (broken since "mtest: rework timeouts")', "mtest: restore timeout (broken since )"),
        ('Revert "docs: drop the faq"', 'Revert "docs: drop the faq"'),
        ("Fix regression from 1a2b3c4d5e6f and ABCDEF0", "Fix regression from and"),
        ("bump to 123456 (six digits stay) and cafe", "bump to 123456 (six digits stay) and cafe"),
        ("Fix deadbeefcafe42 crash (#1234)", "Fix crash"),
        ("Fix crash #99, see gh#7 and PR #12a", "Fix crash , see gh and PR #12a"),
        ('x: y ("quoted (with parens)")  tail', "x: y tail"),
        ("  many   spaces\tand\nnewlines ", "many spaces and newlines"),
        ("", ""),
    ],
)
def test_strip_incident_title(subject, cleaned):
    assert strip_incident_title(subject) == cleaned


def test_strip_incident_title_hex_of_41_chars_stays():
    long_hex = "a" * 41
    assert strip_incident_title(f"x {long_hex} y") == f"x {long_hex} y"
    assert strip_incident_title(f"x {'a' * 40} y") == "x y"


# --- component_prefix ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "prefix"),
    [
        ("tc: fix flower parsing", "tc"),
        ("ip route: support nexthop ids", "ip route"),
        ("docs/markdown: fix a link", "docs/markdown"),
        ("MTest: Handle timeouts", "mtest"),
        ("  net/sched :  x", "net/sched"),
        ("fix the crash that happens when: x", None),  # a sentence
        ("a" * 41 + ": x", None),
        ('Revert "tc: add x"', None),
        ("no prefix here", None),
        ("url http://x.test/y", None),
        (": empty", None),
        ("one two three: ok", "one two three"),
        ("one two three four: no", None),
    ],
)
def test_component_prefix(subject, prefix):
    assert component_prefix(subject) == prefix


# --- BM25 ------------------------------------------------------------------------------


def reference_bm25(docs, query, k1=1.2, b=0.75):
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    scores = []
    for doc in docs:
        tf = Counter(doc)
        total = 0.0
        for q in query:  # every occurrence counts
            df = sum(1 for d in docs if q in d)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf[q] * (k1 + 1) / (tf[q] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(total)
    return scores


DOCS = [
    tokenize("tc: fix flower parsing of ct_state flags"),
    tokenize("ip route: support nexthop ids in route replace"),
    tokenize("ip: fix crash in parse_rtattr_flags when rta is NULL"),
    tokenize("docs: update the faq"),
    [],
]


def test_bm25_matches_reference_formula():
    bm = BM25(DOCS)
    for query in (["flags"], ["ip", "route", "nexthop"], ["crash", "crash", "null"], ["unknown"], []):
        assert bm.score(query) == pytest.approx(reference_bm25(DOCS, query))


def test_bm25_many_new_tokens_take_the_batch_path():
    bm = BM25(DOCS)
    query = tokenize("ip route fix crash flags parse the faq in of when")
    assert len(set(query)) > text._FEW_TOKENS
    assert bm.score(query) == pytest.approx(reference_bm25(DOCS, query))


def test_bm25_parameters():
    bm = BM25(DOCS, k1=2.0, b=0.3)
    query = ["fix", "ip", "flags"]
    assert bm.score(query) == pytest.approx(reference_bm25(DOCS, query, k1=2.0, b=0.3))


def test_bm25_idf_is_lucene_style_and_non_negative():
    docs = [["common", "a1"], ["common", "b1"], ["common"]]
    bm = BM25(docs)
    assert bm.idf("common") == pytest.approx(math.log(1 + 0.5 / 3.5))
    assert bm.idf("a1") == pytest.approx(math.log(1 + 2.5 / 1.5))
    assert bm.idf("absent") == pytest.approx(math.log(1 + 3.5 / 0.5))
    assert all(s > 0 for s in bm.score(["common"]))


def test_bm25_repeated_query_token_counts_each_time():
    bm = BM25(DOCS)
    once = bm.score(["crash"])
    twice = bm.score(["crash", "crash"])
    assert twice == pytest.approx([2 * s for s in once])


def test_bm25_rare_term_and_short_document_win():
    bm = BM25(DOCS)
    scores = bm.score(tokenize("crash in parse rtattr"))
    assert max(range(len(scores)), key=scores.__getitem__) == 2
    assert scores[4] == 0.0


def test_bm25_score_many_and_cache_are_consistent():
    bm = BM25(DOCS)
    queries = [["ip"], ["ip", "route"], ["faq", "ip"], ["ip"]]
    first = bm.score_many(queries)
    fresh = [BM25(DOCS).score(q) for q in queries]
    for got, want in zip(first, fresh):
        assert got == pytest.approx(want)
    assert bm.score_many(queries) == first


def test_bm25_edge_cases():
    assert BM25([]).score(["x"]) == []
    assert len(BM25([])) == 0
    assert BM25([[], []]).score(["x"]) == [0.0, 0.0]
    assert len(BM25(DOCS)) == len(DOCS)
    assert BM25([["x", "x"]]).score(iter(["x"]))[0] > 0  # any iterable query
