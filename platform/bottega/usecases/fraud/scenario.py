"""Scenarios: a seed, a start time and a timeline of phases, written in YAML.

A phase gives its duration in simulated time, its rate of transactions, its shifts of the input
distributions, its fraud (the attack rate, the mix of attack patterns, the active concept terms)
and its label delay. Writing a new scenario needs no code: see ``scenarios/*.yaml``.

Every model forbids unknown fields, and :func:`load_scenario` turns any mistake into one line that
names the file, the line, the field and the reason::

    scenarios/bad.yaml:14: phases.1.rate_per_hour: Input should be greater than 0
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bottega.errors import ConfigError
from bottega.usecases.fraud.concept import BASELINE_TERMS, TERMS
from bottega.usecases.fraud.patterns import PATTERNS
from bottega.usecases.fraud.population import CATEGORIES, COUNTRIES

# The share of transactions that attack generators inject when a phase does not say; with the
# concept's intercept it puts the baseline label rate near 0.5%.
DEFAULT_ATTACK_RATE = 0.005
DEFAULT_PATTERNS: Mapping[str, float] = {
    "card_testing": 0.4,
    "account_takeover": 0.35,
    "compromised_merchant": 0.25,
}

MAX_CARDS = 1_000_000
MAX_MERCHANTS = 100_000
MAX_RATE_PER_HOUR = 10_000_000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class ScenarioError(ConfigError):
    """A scenario file is missing, is not valid YAML, or does not match the schema."""


def parse_duration(value: object) -> timedelta:
    """``"30m"``, ``"6h"``, ``"2d"``, ``"1h30m"`` (units s, m, h, d, w) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '30m', '6h' or '2d', got {value!r}")
    text = value.strip().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}: use a number and a unit (s, m, h, d, w)")
    try:
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long") from None


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than 0")
    return value


def _one_of(kind: str, allowed: Mapping[str, Any]) -> AfterValidator:
    def check(name: str) -> str:
        if name not in allowed:
            raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
        return name

    return AfterValidator(check)


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
CategoryName = Annotated[str, _one_of("category", CATEGORIES)]
CountryName = Annotated[str, _one_of("country", COUNTRIES)]
PatternName = Annotated[str, _one_of("pattern", PATTERNS)]
TermName = Annotated[str, _one_of("concept term", TERMS)]
Multiplier = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    # An infinite rate or a NaN weight would stall the simulator rather than fail: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PopulationSpec(_Model):
    """How many cards and merchants the world has."""

    # The upper bounds keep a typo (an extra three zeros) from building a world that does not
    # fit in memory.
    cards: int = Field(default=5000, ge=1, le=MAX_CARDS, description="Number of cards.")
    merchants: int = Field(
        default=400,
        ge=len(CATEGORIES),
        le=MAX_MERCHANTS,
        description="Number of merchants, at least one per category.",
    )


class Shifts(_Model):
    """Shifts of the input distributions against the baseline world."""

    amount_scale: float = Field(default=1.0, gt=0, description="Multiplies every legit amount.")
    category_weights: dict[CategoryName, Multiplier] = Field(
        default_factory=dict, description="Multiplies how often each category is chosen."
    )
    country_weights: dict[CountryName, Multiplier] = Field(
        default_factory=dict,
        description="Multiplies the traffic of cards issued in each country, and how often "
        "travellers and online shoppers choose it.",
    )
    online_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of legit purchases made online (all categories).",
    )

    @model_validator(mode="after")
    def _some_weight_left(self) -> Shifts:
        if self.category_weights and all(
            self.category_weights.get(name, 1.0) == 0 for name in CATEGORIES
        ):
            raise ValueError("category_weights leave every category at 0")
        if self.country_weights and all(
            self.country_weights.get(name, 1.0) == 0 for name in COUNTRIES
        ):
            raise ValueError("country_weights leave every country at 0")
        return self


class Fraud(_Model):
    """How much fraud the attack generators inject, and the concept that labels it."""

    attack_rate: float = Field(
        default=DEFAULT_ATTACK_RATE,
        ge=0,
        le=1,
        description="Share of transactions injected by the attack generators.",
    )
    patterns: dict[PatternName, Multiplier] = Field(
        default_factory=lambda: dict(DEFAULT_PATTERNS),
        description="Mix of attack generators, as relative shares of attack transactions.",
    )
    concept: list[TermName] = Field(
        default_factory=lambda: list(BASELINE_TERMS),
        description="The risk terms active in the fraud probability.",
    )
    intercept_shift: float = Field(
        default=0.0, description="Added to every transaction's log-odds: a prior (label) shift."
    )

    @field_validator("concept")
    @classmethod
    def _unique(cls, terms: list[str]) -> list[str]:
        repeated = sorted({t for t in terms if terms.count(t) > 1})
        if repeated:
            raise ValueError(f"concept terms listed twice: {', '.join(repeated)}")
        return terms

    @model_validator(mode="after")
    def _patterns_for_attacks(self) -> Fraud:
        if self.attack_rate > 0 and not any(w > 0 for w in self.patterns.values()):
            raise ValueError("attack_rate > 0 needs at least one pattern with a weight above 0")
        return self


class Labels(_Model):
    """When ground truth arrives: a log-normal delay, and a share that never does."""

    delay_median: PositiveDuration = Field(default=timedelta(hours=1))
    delay_sigma: float = Field(default=0.5, ge=0, description="Log-normal sigma of the delay.")
    never_fraction: float = Field(default=0.02, ge=0, le=1)


class Phase(_Model):
    """One stretch of the timeline."""

    name: str = Field(min_length=1)
    duration: PositiveDuration
    rate_per_hour: float = Field(
        gt=0, le=MAX_RATE_PER_HOUR, description="Transactions per simulated hour, on average."
    )
    shifts: Shifts = Field(default_factory=Shifts)
    fraud: Fraud = Field(default_factory=Fraud)
    labels: Labels = Field(default_factory=Labels)


class Scenario(_Model):
    """A named, seeded timeline of phases."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int
    start: AwareDatetime
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    phases: list[Phase] = Field(min_length=1)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("phases")
    @classmethod
    def _distinct_names(cls, phases: list[Phase]) -> list[Phase]:
        names = [phase.name for phase in phases]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"phase names must be distinct; repeated: {', '.join(repeated)}")
        return phases

    @property
    def duration(self) -> timedelta:
        """The length of the whole timeline."""
        return sum((phase.duration for phase in self.phases), timedelta(0))

    @property
    def end(self) -> datetime:
        """When the last phase ends."""
        return self.start + self.duration


DAY = timedelta(days=1)


def aligned_start(scenario_start: datetime, newest: datetime | None) -> datetime:
    """``scenario_start`` plus the fewest whole days that put it after ``newest``: where a
    replay that continues a store whose newest event is ``newest`` begins."""
    if newest is None or newest < scenario_start:
        return scenario_start
    days = math.floor((newest - scenario_start) / DAY) + 1
    return scenario_start + days * DAY


def aligned_end(scenario_start: datetime, now: datetime) -> datetime:
    """The latest time at or before ``now`` that is ``scenario_start`` plus whole days.

    History that ends there is continued by a replay of the same scenario with no gap: the
    replay begins exactly where the history stops (:func:`aligned_start`), so a card's 1-hour
    and 24-hour aggregates carry on as they would have, rather than after hours of silence.
    """
    if now < scenario_start:
        return scenario_start - math.ceil((scenario_start - now) / DAY) * DAY
    return scenario_start + math.floor((now - scenario_start) / DAY) * DAY


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise :class:`ScenarioError` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file", hint=_available(path)) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_scenario(text, source=str(path))


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text; errors name ``source`` and the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScenarioError(f"{source}{line}: YAML syntax error: {reason}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: YAML error: {_one_line(str(exc))}") from None
    if not isinstance(data, dict) or root is None:
        kind = "an empty file" if data is None else type(data).__name__
        raise ScenarioError(f"{source}:1: expected a mapping of scenario fields, got {kind}")
    duplicate = _first_duplicate_key(root)
    if duplicate is not None:
        raise ScenarioError(f"{source}:{duplicate[0]}: {duplicate[1]}: key given twice")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_describe(exc, root, source)) from None


def _describe(exc: ValidationError, root: yaml.Node, source: str) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = ".".join(str(p) for p in loc if p != "[key]") or "<scenario>"
        reason = _one_line(str(error["msg"])).removeprefix("Value error, ")
        lines.append((_line_of(root, loc), path, reason))
    line, path, reason = lines[0]
    message = f"{source}:{line}: {path}: {reason}"
    if len(lines) > 1:
        others = ", ".join(f"{p} (line {n})" for n, p, _ in lines[1:])
        message += f" (and {len(lines) - 1} more: {others})"
    return message


def _line_of(root: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the YAML node at ``loc``, or of its nearest existing ancestor."""
    node = root
    line = root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    # The key's line: for a nested block the value starts a line lower.
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _first_duplicate_key(node: yaml.Node) -> tuple[int, str] | None:
    # PyYAML keeps the last of two equal keys without a word; a typo'd copy would go unnoticed.
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                return key.start_mark.line + 1, str(key.value)
            seen.add(key.value)
            found = _first_duplicate_key(value)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _first_duplicate_key(item)
            if found is not None:
                return found
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _available(path: Path) -> str | None:
    folder = path.parent
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.glob("*.yaml"))
    return f"scenarios in {folder}: {', '.join(names)}" if names else None
