"""The scan as SARIF 2.1.0, the format GitHub code scanning (upload-sarif) reads.

One run, one rule (RCAHOOK001, risky change). Each medium or high risk commit is one
result, anchored to its riskiest hunk (new side of the diff, repository-relative path), so
the alert lands on the lines to review first; commits that add no line anywhere have no
place to land and are left out. `partialFingerprints` hash the commit, the path and the
hunk, so re-running the scan (or re-uploading) updates an alert instead of adding one.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import quote

from rcahook import __version__
from rcahook.risk.model import RiskModel
from rcahook.risk.scan import CommitRisk
from rcahook.untrusted import sarif_text

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/rcahook/"
FINGERPRINT_KEY = "rcahookRisk/v1"
RULE_ID = "RCAHOOK001"
RULES = [{
    "id": RULE_ID,
    "name": "RiskyChange",
    "shortDescription": {"text": "Change likely to become an incident's root cause"},
    "fullDescription": {"text": (
        "rcahook estimates the probability that a later commit will name this one as the cause of a "
        "bug (Fixes: <sha>, a revert), from its size and spread, the past root causes among the files "
        "and definitions it touches, their callers, the author's experience with them, and the past "
        "root causes it resembles.")},
    "help": {"text": "Review the hunk shown first; the message lists the reasons and the past root causes "
                     "this change resembles, with the fixes that named them.",
             "markdown": "Review the hunk shown first. The message lists the reasons and the past root causes "
                         "this change resembles, with the fixes that named them. See `docs/scan.md` of rcahook."},
    "defaultConfiguration": {"level": "warning"},
    "properties": {"tags": ["risk", "pre-push"], "precision": "medium"},
}]
SARIF_LEVEL = {"high": "error", "medium": "warning", "low": "note"}


def fingerprint(c: CommitRisk) -> str:
    assert c.location is not None, "only anchored results have a fingerprint"
    key = f"{c.sha}\0{c.location.path}\0{','.join(map(str, c.location.hunk))}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _message(c: CommitRisk) -> str:
    # Subjects and reasons (paths, past subjects) are the repository's: brackets in a SARIF
    # message would be embedded links, so they are escaped (sarif_text).
    reasons = "; ".join(r.text for r in c.reasons)
    return sarif_text(f"Risk {c.probability:.2f} ({c.level}) for commit {c.sha[:12]} \"{c.subject}\": {reasons}.")


def result(c: CommitRisk) -> dict:
    assert c.location is not None, "a SARIF result needs a location"
    return {
        "ruleId": RULE_ID,
        "ruleIndex": 0,
        "level": SARIF_LEVEL[c.level],
        "message": {"text": _message(c)},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": quote(c.location.path, safe="/"), "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": c.location.start_line, "endLine": c.location.end_line},
        }}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(c)},
        "properties": {"risk": round(c.probability, 4), "riskLevel": c.level, "commit": c.sha,
                       "reasons": [r.kind for r in c.reasons]},
    }


def _document(results: list[dict], invocation: dict, properties: dict | None = None) -> dict:
    run = {
        "tool": {"driver": {"name": "rcahook", "version": __version__, "semanticVersion": __version__,
                            "informationUri": INFORMATION_URI, "rules": RULES}},
        "automationDetails": {"id": "rcahook/risk/"},
        "columnKind": "unicodeCodePoints",
        "invocations": [invocation],
        "results": results,
    }
    if properties is not None:
        run["properties"] = properties
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def to_sarif(risks: Sequence[CommitRisk], *, model: RiskModel, source: str, include_low: bool = False) -> dict:
    shown = [c for c in risks if c.location is not None and (include_low or c.level != "low")]
    return _document([result(c) for c in sorted(shown, key=lambda c: -c.probability)],
                     {"executionSuccessful": True},
                     {"model": source, "thresholds": {"medium": model.thresholds[0], "high": model.thresholds[1]}})


def without_results(message: str, *, kind: str, failed: bool) -> dict:
    """A document for a scan that assessed nothing, carrying why: a failure (`failed`: the run is
    marked unsuccessful, so an upload is not mistaken for a clean scan) or a skip.

    `kind` names the notification (an error class, `timeout`, `skipped`)."""
    notification = {"level": "error" if failed else "note", "message": {"text": sarif_text(message)},
                    "descriptor": {"id": kind}}
    return _document([], {"executionSuccessful": not failed, "toolExecutionNotifications": [notification]})
