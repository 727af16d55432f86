"""Tokenization, identifier splitting, commit-subject cleaning and BM25 scoring.

`tokenize` is the benchmark protocol's tokenizer and must stay byte-for-byte compatible
with it: lower-case, then every run of 2+ ASCII letters/digits is a token (so `_`, `-`,
`.` and non-ASCII characters all split).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

_TOKEN = re.compile(r"[a-z0-9]{2,}")
# One identifier part: an acronym with a one-letter version tag (IPv6), an all-caps run
# before a capitalised word (HTTP|Response), a capitalised or lower-case word with
# trailing digits (Response2, utf8), an all-caps run with digits (MD5), or a run of
# digits (the 64 of x86_64).
_IDENT_PART = re.compile(
    r"[A-Z]{2,}[a-z][0-9]+(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+"
)
_IDENT_CHUNK = re.compile(r"[A-Za-z0-9]+")

# A path of documentation, tests or CI: the `doc_share` features of the ranker and the risk
# model, and where the scan looks last.
DOC_PATH = re.compile(
    r"(^|/)(docs?|man|tests?|testsuite|test cases|unittests|ci|\.github|\.gitlab)/"
    r"|\.(md|rst|txt|ya?ml|adoc)$|(^|/)(NEWS|README|ChangeLog|CHANGELOG)[^/]*$", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of 2+ characters, in order, repeats kept."""
    return _TOKEN.findall(text.lower())


def split_identifier(name: str) -> list[str]:
    """Split a code identifier into lower-cased parts of 2+ characters.

    Splits on anything non-alphanumeric (`_`, `.`, `::`, `-`) and on case changes;
    trailing digits stay on the word before them: `getHTTPResponse2` gives
    `get, http, response2`, `parse_rtattr_flags` gives `parse, rtattr, flags`,
    `utf8Decode` gives `utf8, decode`, `getIPv6Addr` gives `get, ipv6, addr`.
    One-letter parts are dropped.
    """
    parts: list[str] = []
    for chunk in _IDENT_CHUNK.findall(name):
        for part in _IDENT_PART.findall(chunk):
            if len(part) >= 2:
                parts.append(part.lower())
    return parts


def identifier_tokens(idents: Iterable[str]) -> list[str]:
    """Each identifier lower-cased as a whole, followed by its parts.

    A part equal to the whole identifier (`flags`) is not repeated, so a one-word
    identifier counts once. Identifiers shorter than 2 characters contribute nothing.
    """
    tokens: list[str] = []
    for ident in idents:
        whole = ident.strip().lower()
        if len(whole) >= 2:
            tokens.append(whole)
        tokens.extend(part for part in split_identifier(ident) if part != whole)
    return tokens


# --- commit-subject cleaning (the benchmark protocol's incident titles) -------------

# `("subject")` / `('subject')`: the subject may itself contain parentheses and quotes,
# so match up to the first closing quote that is directly followed by `)`.
_PAREN_QUOTED = re.compile(r"""\(\s*"[^\n]*?"\s*\)|\(\s*'[^\n]*?'\s*\)""")
# A parenthesised group without nested parentheses, e.g. `(introduced in "x: y")`.
_PAREN_GROUP = re.compile(r"\(([^()]*)\)")
_DOUBLE_QUOTED = re.compile(r'"[^"]*"')
_HEX = re.compile(r"\b[0-9a-f]{7,40}\b", re.IGNORECASE)
_ISSUE_REF = re.compile(r"#[0-9]+\b")
# What a group is left with once quotes, hashes and references are gone.
_EMPTY_GROUP = re.compile(r"[(\[]\s*[,;:.\-]*\s*[)\]]")
_SPACES = re.compile(r"\s+")


def _strip_quotes_in_group(match: re.Match[str]) -> str:
    inner = match.group(1)
    if '"' not in inner:
        return match.group(0)
    return "(" + _DOUBLE_QUOTED.sub("", inner) + ")"


def strip_incident_title(subject: str) -> str:
    """Clean a commit subject the way the benchmark protocol cleans incident titles.

    Removes quoted subjects in parentheses (`("...")`, `('...')`, and `"..."` inside a
    parenthesised group such as `(since "x: y")`), hex strings of 7-40 characters
    (word-bounded, any case), and `#123` references; then drops parentheses or brackets
    left empty and collapses whitespace. A bare `"..."` outside parentheses is kept:
    in `Revert "tc: add x"` it is the title itself.
    """
    text = _PAREN_QUOTED.sub(" ", subject)
    text = _PAREN_GROUP.sub(_strip_quotes_in_group, text)
    text = _HEX.sub(" ", text)
    text = _ISSUE_REF.sub(" ", text)
    text = _EMPTY_GROUP.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


_PREFIX_MAX_CHARS = 40
_PREFIX_MAX_WORDS = 3


def component_prefix(subject: str) -> str | None:
    """The `tc:` / `ip route:` / `docs/foo:` component before the first `": "`.

    Lower-cased and stripped. None when there is no `": "`, or the text before it looks
    like a sentence rather than a component: empty, longer than 40 characters, more
    than 3 words, or containing quotes (`Revert "tc: x"` has no component of its own).
    """
    head, sep, _ = subject.partition(": ")
    if not sep:
        return None
    prefix = _SPACES.sub(" ", head.strip().lower())
    if (
        not prefix
        or len(prefix) > _PREFIX_MAX_CHARS
        or len(prefix.split(" ")) > _PREFIX_MAX_WORDS
        or any(q in prefix for q in "\"'`")
    ):
        return None
    return prefix


# --- BM25 ---------------------------------------------------------------------------

# Up to this many new query tokens, look each one up in every document; beyond it, one
# pass over the documents intersecting each with the query is cheaper.
_FEW_TOKENS = 4


class BM25:
    """Okapi BM25 over a fixed corpus of tokenized documents.

    For a query Q (a token list) and a document D of length |D| in a corpus of N
    documents whose mean length is avgdl::

        score(Q, D) = sum over q in Q of
            idf(q) * tf(q, D) * (k1 + 1) / (tf(q, D) + k1 * (1 - b + b * |D| / avgdl))

        idf(q) = ln(1 + (N - df(q) + 0.5) / (df(q) + 0.5))

    where tf(q, D) counts q in D and df(q) counts documents containing q. This is the
    Lucene variant of the IDF: never negative, so a token present in every document
    still adds a little. The sum runs over every occurrence in Q: a token repeated in
    the query counts once per repetition. Tokens absent from the corpus add 0.

    Building costs one `Counter` per document. Per-token weights (idf times the
    saturated tf of every document containing the token) are computed the first time
    a query uses the token and cached, so scoring many queries against one corpus only
    pays for tokens not seen before.
    """

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75):
        assert k1 >= 0 and 0 <= b <= 1, f"BM25 needs k1 >= 0 and 0 <= b <= 1, got {k1=}, {b=}"
        self.k1 = k1
        self.b = b
        self._counts = [Counter(doc) for doc in documents]
        lengths = [len(doc) for doc in documents]
        self.n_docs = len(lengths)
        self.avgdl = (sum(lengths) / self.n_docs) if self.n_docs else 0.0
        # All-empty corpus: every tf is 0, any positive avgdl gives the same zero scores.
        avgdl = self.avgdl or 1.0
        self._norm = [k1 * (1 - b + b * length / avgdl) for length in lengths]
        # token -> (document indices, weight of the token in each of those documents)
        self._weights: dict[str, tuple[list[int], list[float]]] = {}

    def __len__(self) -> int:
        return self.n_docs

    def idf(self, token: str) -> float:
        self._prepare((token,))
        df = len(self._weights[token][0])
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def _prepare(self, tokens: Iterable[str]) -> None:
        """Compute and cache the per-document weights of tokens not seen before."""
        missing = {token for token in tokens if token not in self._weights}
        if not missing:
            return
        postings: dict[str, tuple[list[int], list[int]]] = {t: ([], []) for t in missing}
        if len(missing) <= _FEW_TOKENS:
            for token, (docs, tfs) in postings.items():
                for i, counts in enumerate(self._counts):
                    tf = counts.get(token)
                    if tf:
                        docs.append(i)
                        tfs.append(tf)
        else:
            # One pass over the corpus: a C-level set intersection per document beats a
            # Python-level lookup per (token, document) once the query has a few tokens.
            for i, counts in enumerate(self._counts):
                for token in missing.intersection(counts):
                    docs, tfs = postings[token]
                    docs.append(i)
                    tfs.append(counts[token])
        k1_plus_1 = self.k1 + 1
        norm = self._norm
        for token, (docs, tfs) in postings.items():
            df = len(docs)
            idf = math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))
            weights = [idf * tf * k1_plus_1 / (tf + norm[i]) for i, tf in zip(docs, tfs)]
            self._weights[token] = (docs, weights)

    def score(self, query_tokens: Iterable[str]) -> list[float]:
        """One score per document, in corpus order."""
        scores = [0.0] * self.n_docs
        query = Counter(query_tokens)
        self._prepare(query)
        for token, times in query.items():
            docs, weights = self._weights[token]
            if times == 1:
                for i, w in zip(docs, weights):
                    scores[i] += w
            else:
                for i, w in zip(docs, weights):
                    scores[i] += times * w
        return scores

    def score_many(self, queries: Iterable[Iterable[str]]) -> list[list[float]]:
        """`score` for each query; token weights are shared between queries."""
        return [self.score(query) for query in queries]
