"""Scenario files: the shipped ones load, and every mistake gets one line naming file:line."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest

from bottega.errors import ConfigError
from bottega.usecases.fraud.concept import BASELINE_TERMS
from bottega.usecases.fraud.scenario import (
    DEFAULT_PATTERNS,
    ScenarioError,
    load_scenario,
    parse_duration,
)

SCENARIOS = Path(__file__).resolve().parents[4] / "scenarios"
SHIPPED = ("baseline", "covariate-shift", "fraud-ring", "label-shift")

GOOD = """\
name: tiny
description: two phases
seed: 7
start: 2025-01-06T00:00:00Z
population:
  cards: 100
  merchants: 20
phases:
  - name: calm
    duration: 2h
    rate_per_hour: 300
  - name: storm
    duration: 1h30m
    rate_per_hour: 600
    shifts:
      amount_scale: 1.5
      category_weights: {electronics: 2.0}
      country_weights: {GB: 3}
      online_share: 0.5
    fraud:
      attack_rate: 0.02
      patterns: {card_testing: 1.0, fraud_ring: 0.5}
      concept: [amount_spike, card_testing, fraud_ring]
      intercept_shift: 0.5
    labels:
      delay_median: 3h
      delay_sigma: 0.4
      never_fraction: 0.1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def line_of(text: str, fragment: str) -> int:
    """The 1-based line where ``fragment`` first appears."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in the text")


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.start.tzinfo is not None and scenario.start.utcoffset() == timedelta(0)
    first = scenario.phases[0]
    # Every scenario opens with a few hours of baseline behaviour.
    assert first.duration <= timedelta(hours=12)
    assert first.fraud.concept == list(BASELINE_TERMS)
    assert first.shifts.amount_scale == 1.0 and not first.shifts.category_weights


def test_the_four_shipped_scenarios_and_nothing_else() -> None:
    assert sorted(p.stem for p in SCENARIOS.glob("*.yaml")) == sorted(SHIPPED)


def test_the_drift_scenarios_drift_as_their_names_say() -> None:
    baseline = load_scenario(SCENARIOS / "baseline.yaml")
    assert len({p.model_dump_json(exclude={"name", "duration"}) for p in baseline.phases}) == 1

    covariate = load_scenario(SCENARIOS / "covariate-shift.yaml").phases[-1]
    assert covariate.shifts.category_weights and covariate.shifts.country_weights
    assert covariate.shifts.amount_scale != 1.0
    assert covariate.fraud.concept == list(BASELINE_TERMS)

    ring = load_scenario(SCENARIOS / "fraud-ring.yaml").phases[-1]
    assert set(ring.fraud.concept) == {*BASELINE_TERMS, "fraud_ring"}
    assert ring.fraud.patterns["fraud_ring"] > 0

    surge, calm = load_scenario(SCENARIOS / "label-shift.yaml").phases[::-1]
    assert surge.fraud.concept == calm.fraud.concept
    assert surge.fraud.attack_rate > calm.fraud.attack_rate or surge.fraud.intercept_shift > 0


def test_a_scenario_needs_no_code(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    calm, storm = scenario.phases
    assert scenario.start.tzinfo == UTC
    assert scenario.duration == timedelta(hours=3, minutes=30)
    assert scenario.end == scenario.start + timedelta(hours=3, minutes=30)
    assert storm.labels.delay_median == timedelta(hours=3)
    assert storm.shifts.country_weights == {"GB": 3.0}
    # Defaults: baseline fraud, no shifts.
    assert calm.fraud.patterns == dict(DEFAULT_PATTERNS)
    assert calm.fraud.concept == list(BASELINE_TERMS)
    assert calm.fraud.intercept_shift == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("1w", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "30 minutes", "h", "", "1h-5m", 30])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_negative_rate_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("rate_per_hour: 600", "rate_per_hour: -5")
    message = error_for(tmp_path, text)
    path = tmp_path / "scenario.yaml"
    line = line_of(text, "rate_per_hour: -5")
    assert message == f"{path}:{line}: phases.1.rate_per_hour: Input should be greater than 0"


def test_a_missing_field_names_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    text = GOOD.replace("    duration: 1h30m\n", "")
    message = error_for(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'scenario.yaml'}:{line_of(text, '- name: storm')}: ")
    assert "phases.1.duration: Field required" in message


def test_a_missing_top_level_field(tmp_path: Path) -> None:
    message = error_for(tmp_path, GOOD.replace("seed: 7\n", ""))
    assert ":1: seed: Field required" in message


def test_an_unknown_pattern_lists_the_allowed_ones(tmp_path: Path) -> None:
    text = GOOD.replace("fraud_ring: 0.5}", "phishing: 0.5}")
    message = error_for(tmp_path, text)
    assert f":{line_of(text, 'phishing')}: phases.1.fraud.patterns.phishing: " in message
    assert "unknown pattern 'phishing'" in message
    assert "allowed: card_testing, account_takeover, compromised_merchant, fraud_ring" in message


def test_an_unknown_concept_term_lists_the_allowed_ones(tmp_path: Path) -> None:
    text = GOOD.replace("concept: [amount_spike,", "concept: [vibes,")
    message = error_for(tmp_path, text)
    assert f":{line_of(text, 'vibes')}: phases.1.fraud.concept.0: unknown concept term" in message
    assert "fraud_ring" in message


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("    rate_per_hour: 300\n", "    rate_per_hour: 300\n    colour: red\n")
    message = error_for(tmp_path, text)
    expected = f":{line_of(text, 'colour')}: phases.0.colour: Extra inputs are not permitted"
    assert expected in message


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("{electronics: 2.0}", "{gadgets: 2.0}", "category_weights.gadgets", "unknown category"),
        ("{GB: 3}", "{XX: 3}", "country_weights.XX", "unknown country 'XX'; allowed: FR"),
        ("{GB: 3}", "{GB: -1}", "country_weights.GB", "greater than or equal to 0"),
        ("duration: 2h", "duration: 0m", "phases.0.duration", "greater than 0"),
        ("duration: 2h", "duration: 2 hours", "phases.0.duration", "invalid duration"),
        ("attack_rate: 0.02", "attack_rate: 1.5", "attack_rate", "less than or equal to 1"),
        ("never_fraction: 0.1", "never_fraction: 2", "never_fraction", "less than or equal to 1"),
        ("online_share: 0.5", "online_share: -0.1", "online_share", "greater than or equal to 0"),
        ("2025-01-06T00:00:00Z", "2025-01-06T00:00:00", "start", "timezone"),
        ("rate_per_hour: 600", "rate_per_hour: .inf", "phases.1.rate_per_hour", "finite"),
        ("- name: storm", "- name: calm", "phases", "repeated: calm"),
        ("duration: 2h", "duration: 9999999999999999w", "phases.0.duration", "too long"),
        ("cards: 100", "cards: 1000000000000", "population.cards", "less than or equal"),
        ("merchants: 20", "merchants: 5", "population.merchants", "greater than or equal"),
        ("rate_per_hour: 600", "rate_per_hour: 1e300", "phases.1.rate_per_hour", "less than"),
        ("seed: 7", "seed: 7.5", "seed", "valid integer"),
        ("  - name: calm", "  - name: ''", "phases.0.name", "at least 1 character"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, field: str, reason: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    message = error_for(tmp_path, text)
    assert field in message and reason in message, message


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = GOOD.replace("{electronics: 2.0}", "{electronics: 2.0")
    message = error_for(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'scenario.yaml'}:")
    assert "YAML syntax error" in message
    reported = int(message.split(":")[1])
    assert line_of(text, "electronics") <= reported <= line_of(text, "electronics") + 2


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("seed: 7\n", "seed: 7\nseed: 8\n")
    message = error_for(tmp_path, text)
    assert f":{line_of(text, 'seed: 8')}: seed: key given twice" in message


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error_for(tmp_path, "- just\n- a list\n")
    assert "an empty file" in error_for(tmp_path, "")


def test_a_missing_file_names_it_and_lists_what_there_is(tmp_path: Path) -> None:
    (tmp_path / "baseline.yaml").write_text(GOOD)
    missing = tmp_path / "baseline-typo.yaml"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(missing)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{missing}: no such scenario file")
    assert "baseline.yaml" in message


def test_a_file_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("name: calm", "name: caf\u00e9").encode("latin-1"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    offset = GOOD.index("name: calm") + len("name: caf")
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset {offset})"


def test_a_directory_or_a_binary_file_is_refused_in_one_line(tmp_path: Path) -> None:
    for path, expected in (
        (tmp_path, "cannot read"),
        (Path("/dev/null"), "an empty file"),
    ):
        with pytest.raises(ScenarioError, match=expected) as caught:
            load_scenario(path)
        assert "\n" not in str(caught.value)
    binary = tmp_path / "scenario.yaml"
    binary.write_bytes(b"\x00\x01\x02 name: x")
    with pytest.raises(ScenarioError):
        load_scenario(binary)


def test_several_mistakes_stay_on_one_line(tmp_path: Path) -> None:
    text = GOOD.replace("rate_per_hour: 600", "rate_per_hour: -5").replace("seed: 7", "seed: seven")
    message = error_for(tmp_path, text)
    assert "seed" in message and "rate_per_hour" in message and "1 more" in message


def test_a_scenario_error_is_a_config_error() -> None:
    assert issubclass(ScenarioError, ConfigError)
