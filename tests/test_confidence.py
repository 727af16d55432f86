"""The confidence knows when it knows nothing: the real pipeline through the CLI on the demo
repository, and the calibration file's format versions."""
from __future__ import annotations

import json

import pytest

from clirun import rcahook
from rcahook.demo import generate
from rcahook.errors import ConfigError
from rcahook.rca.confidence import (
    CALIBRATION_VERSION,
    INPUTS,
    Calibration,
    Signals,
    calibration_document,
    fit_evidence,
    fit_platt,
    load_calibration,
    shipped_calibration,
)
from rcahook.rca.investigate import DEFAULT_MIN_CONFIDENCE


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    made = generate(tmp_path_factory.mktemp("demo") / "repo")
    result = rcahook("index", "--repo", str(made.repo), "--quiet")
    assert result.code == 0, result.err
    return made


def confidence_of(demo, title: str) -> dict:
    incident = json.loads(demo.incident_file.read_text())
    result = rcahook("investigate", "--repo", str(demo.repo), "--no-update", "--no-save", "--format", "json",
                     "--title", title, "--time", incident["time"])
    assert result.code == 0, result.err
    return json.loads(result.out)


@pytest.mark.parametrize("title", ["zzzz qqqq", "the printer is on fire"])
def test_nonsense_incident_is_below_the_default_min_confidence(demo, title):
    doc = confidence_of(demo, title)
    c = doc["confidence"]
    assert c["value"] < DEFAULT_MIN_CONFIDENCE and not c["confident"]
    assert doc["order"] == "newest_first" and doc["headline"].startswith("no confident suggestion")
    # what made it unsure is in the report: nothing of the title is found anywhere
    assert c["signals"]["title_match_window"] < 0.5 or c["signals"]["unknown_words"] > 0.5


@pytest.mark.parametrize("title", ["http: non-idempotent requests never retry",
                                   "http: POST charges are not retried any more"])
def test_incident_matching_the_planted_culprit_is_confident(demo, title):
    # the demo's culprit is "http: never retry non-idempotent methods"
    doc = confidence_of(demo, title)
    c = doc["confidence"]
    assert c["value"] >= DEFAULT_MIN_CONFIDENCE and c["confident"]
    assert doc["suggestions"][0]["sha"] == demo.culprit and doc["order"] == "ranked"


def test_the_demo_incident_with_its_trace_is_confident(demo):
    result = rcahook("investigate", "--repo", str(demo.repo), "--no-update", "--no-save", "--format", "json",
                     "--incident", str(demo.incident_file))
    assert result.code == 0, result.err
    c = json.loads(result.out)["confidence"]
    assert c["value"] >= DEFAULT_MIN_CONFIDENCE and c["signals"]["located"] == 1.0


def test_shipped_calibration_reads_the_evidence():
    cal = shipped_calibration()
    assert cal.evidence is not None and set(cal.evidence.inputs) <= set(INPUTS) and cal.info.get("source")
    strong = Signals(mass=0.99, title_match_window=1.0, title_match_first=1.0, unknown_words=0.0, component=0.5,
                     same_component=1.0, path_words=0.5, text_best=3.0, located=1.0)
    nothing = Signals(mass=0.99, title_match_window=0.0, title_match_first=0.0, unknown_words=1.0, text_best=0.0)
    assert cal(strong) >= DEFAULT_MIN_CONFIDENCE > cal(nothing)
    assert cal(strong) == pytest.approx(cal.explained(strong) * Calibration(cal.a, cal.b)(0.99))


def test_calibration_version_1_is_migrated_and_keeps_the_shipped_evidence_gate(tmp_path):
    (tmp_path / "calibration.json").write_text(json.dumps({"features": {"a": 0.5, "b": 0.25, "info": {"n": 9}}}))
    cal = load_calibration("features", tmp_path)
    assert (cal.a, cal.b) == (0.5, 0.25) and cal.info["migrated_from_version"] == 1
    # a repository's mass-only calibration takes the shipped evidence gate: nonsense stays unsure
    assert cal.evidence == shipped_calibration().evidence
    nothing = Signals(mass=0.99, title_match_window=0.0, title_match_first=0.0, unknown_words=1.0)
    assert cal(nothing) < DEFAULT_MIN_CONFIDENCE


def test_unknown_or_malformed_calibration_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"version": CALIBRATION_VERSION + 1, "features": {}}))
    with pytest.raises(ConfigError, match="version 3.*delete the file"):
        load_calibration("features", tmp_path)
    path.write_text(json.dumps({"version": CALIBRATION_VERSION, "features": {"a": 1.0}}))
    with pytest.raises(ConfigError, match="malformed"):
        load_calibration("features", tmp_path)
    path.write_text(json.dumps({"version": CALIBRATION_VERSION, "features": {
        "a": 1.0, "b": 0.0, "evidence": {"inputs": ["nonsense"], "weights": [1.0], "centre": [0.0], "bias": 0.0}}}))
    with pytest.raises(ConfigError, match="inputs among"):
        load_calibration("features", tmp_path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_calibration("features", tmp_path)


def test_fitted_gate_round_trips_through_its_versioned_file(tmp_path):
    def signals(t: float) -> Signals:
        return Signals(mass=0.9, title_match_window=t, title_match_first=t, text_best=2 * t)

    real = [signals(t) for t in (0.6, 0.8, 0.9, 1.0, 0.7, 0.95)]
    null = [signals(t) for t in (0.0, 0.1, 0.2, 0.3, 0.65)]
    gate = fit_evidence(real + null, [True] * len(real) + [False] * len(null))
    assert gate(real[3]) > 0.5 > gate(null[0])
    cal = fit_platt([0.9, 0.8, 0.3, 0.95, 0.2, 0.6], [True, True, False, True, False, True])
    cal.evidence = gate
    (tmp_path / "calibration.json").write_text(json.dumps(calibration_document({"features": cal})))
    doc = json.loads((tmp_path / "calibration.json").read_text())
    assert doc["version"] == CALIBRATION_VERSION
    loaded = load_calibration("features", tmp_path)
    assert loaded.evidence == gate and (loaded.a, loaded.b) == (cal.a, cal.b)
    assert loaded(null[4]) == pytest.approx(cal(null[4]))
    with pytest.raises(TypeError, match="pass Signals"):
        loaded(0.9)
