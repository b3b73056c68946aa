"""Search spaces: YAML files read, validated, and turned into Optuna define-by-run.

The built-in spaces ship inside the package (`samplegan_tune/search_spaces/*.yaml`, read with
`importlib.resources`, so an installed wheel has them); `--space FILE.yaml` reads a user's own.

A space file holds a one-line `description`, `settings` (how a search over it runs by default:
trials, report intervals, ASHA rungs, resources), `fixed` TrainConfig values, and `params`,
each one distribution over a TrainConfig field:

    lr_g: {loguniform: [1.0e-5, 1.0e-2]}
    g_depth: {int: [2, 5]}
    adv_loss: {choice: [hinge, lsgan, wgan-gp]}
    lambda_gp: {uniform: [1, 20], when: {adv_loss: wgan-gp}}   # conditional
    context: {times: segment, int: [2, 16]}                      # relative to another field

A param with `when` is sampled only when the named params took one of the given values.
`times: F` samples a factor and sets the field to factor × F (F sampled or fixed earlier); the
factor is an Optuna param named `FIELD_per_F` (e.g. `context_per_segment`). Every Optuna param
name is a plain identifier: Ray would turn a `/` in a config key into a nested dict.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import read_yaml

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
DATA_FIELDS = ("sample_rate", "normalise_dbfs", "holdout_fraction")  # one corpus per search
KINDS = ("loguniform", "uniform", "int", "int_log", "choice")
# `--smoke`: the largest value of each size field, so any space runs in minutes on a CPU while
# every param is still sampled through Ray and Optuna (a relative length keeps its factor).
SMOKE_CAPS = {
    "segment": 128,
    "context": 1024,
    "crossfade": 32,
    "latent": 32,
    "ae_channels": 8,
    "ae_depth": 3,
    "noise_dim": 8,
    "g_channels": 32,
    "g_depth": 3,
    "d_channels": 8,
    "d_depth": 3,
    "d_context_tail": 128,
    "batch_size": 8,
    "rollout_steps": 2,
    "tbptt": 2,
    "n_critic": 2,
    "d_warmup_steps": 4,
    "ae_pretrain_steps": 4,
    "frame_latent": 16,
}
SMOKE_SETTINGS = {
    "max_reports": 2,
    "steps_per_report": 4,
    "grace_period": 1,
    "cpus_per_trial": 1.0,
    "eval_rollouts": 4,
    "eval_seconds": 1.0,
    "top_k": 2,
    "rank_rollouts": 4,
    "rank_seeds": 1,
    "rank_seconds": 2.0,
    "time_budget": 0.0,
}


@dataclass(frozen=True)
class SearchSettings:
    """How a search over a space runs unless the command line says otherwise."""

    num_samples: int = 8  # trials
    max_reports: int = 8  # reports per trial that runs to the end
    steps_per_report: int = 100  # Trainer steps between reports
    grace_period: int = 2  # ASHA: reports before a trial can be stopped
    reduction_factor: int = 2  # ASHA: keep 1 / this at each rung
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as the resources allow
    eval_rollouts: int = 8  # rollouts per report for the quality metrics
    eval_seconds: float = 4.0  # length of each rollout (the music embedding needs 3 s)
    top_k: int = 3  # survivors re-evaluated for the leaderboard
    rank_rollouts: int = 16  # rollouts per seed when re-evaluating
    rank_seeds: int = 2
    rank_seconds: float = 8.0  # length of each re-ranking rollout: what a user listens to
    # Re-ranked scores within this fraction of the best left are a tie, which the checkpoint
    # with more adversarial steps wins (ranking.order; benchmarks/README, 2026-12-05).
    rank_tie: float = 0.05
    # Trials Optuna's TPE samples at random before it models the results (the baseline and
    # `--try` points count): TPE's own default. A short budget that runs ~16 trials wants
    # fewer, or most of it is spent at random.
    startup_trials: int = 10
    time_budget: float = 0.0  # seconds the search may run (0: no limit); --time-budget overrides
    # The final fit (final_fit.py): with a time budget, its last `final_share` continues the
    # best `final_trials` trials from their best checkpoints until the budget ends.
    final_share: float = 0.25
    final_trials: int = 1
    # From which adversarial step each rollout detector stops a trial (before it, it only
    # flags the report); None: it never stops one. Unnamed detectors stop after grace_steps.
    # Set from benchmarks/detector_precision.py: where a firing predicts collapse (≥ 90 %).
    stop_after: dict[str, int | None] = field(default_factory=dict)

    @property
    def grace_steps(self) -> int:
        """Adversarial steps before ASHA may cut a trial or a rollout detector stop it."""
        return self.grace_period * self.steps_per_report

    def stops(self, detector: str, adversarial_steps: int) -> bool:
        """Whether `detector` firing now stops the trial (`stop_after`), or only flags."""
        after = self.stop_after.get(detector, self.grace_steps)
        return after is not None and adversarial_steps >= after

    @property
    def max_steps(self) -> int:
        """Steps of a trial that runs all its reports."""
        return self.max_reports * self.steps_per_report


@dataclass(frozen=True)
class Param:
    """One searched TrainConfig field: its distribution (`kind` over [low, high], or `options`),
    sampled only when the `when` params took one of the given values; with `times`, a factor ×
    that field."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    options: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    times: str | None = None

    def active(self, values: dict[str, Any]) -> bool:
        """Whether this param is sampled given the values so far (its `when` holds)."""
        return all(values.get(k) in allowed for k, allowed in self.when.items())


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file: its name, description, default search settings, fixed values and
    searched params."""

    name: str
    description: str
    settings: SearchSettings
    fixed: dict[str, Any]
    params: tuple[Param, ...]

    def smoke(self) -> SearchSpace:
        """This space at smoke size: sizes capped by SMOKE_CAPS, a few short reports."""
        settings = dataclasses.replace(
            self.settings, num_samples=min(self.settings.num_samples, 4), **SMOKE_SETTINGS
        )
        sampled = {p.name for p in self.params}
        defaults = TrainConfig().to_dict()
        fixed = {k: _capped(k, defaults[k]) for k in SMOKE_CAPS if k in defaults}
        fixed = {k: v for k, v in fixed.items() if k not in sampled}
        fixed.update({k: _capped(k, v) for k, v in self.fixed.items()})
        params = tuple(_smoke_param(p) for p in self.params)
        return SearchSpace(self.name, self.description, settings, fixed, params)

    def baseline(self) -> dict[str, Any]:
        """The measured best `TrainConfig` (the defaults) clipped into this space, as Optuna
        params (a `times:` param as its factor): the point a search tries first. Each active
        param takes the default (over the space's fixed values) or, outside its range, the
        nearest allowed value."""
        defaults = TrainConfig().to_dict()
        values: dict[str, Any] = {**defaults, **self.fixed}
        point: dict[str, Any] = {}
        for p in self.params:
            if not p.active(values):
                continue
            if p.times is not None:  # the defaults' ratio (context 3000 / segment 500 = 6)
                factor = round(defaults[p.name] / defaults[p.times])
                point[factor_name(p)] = min(max(factor, int(p.low)), int(p.high))
                values[p.name] = point[factor_name(p)] * values[p.times]
                continue
            values[p.name] = point[p.name] = _nearest(p, values[p.name])
        return point

    def sample(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run: suggest every active param; return the full TrainConfig dict."""
        values: dict[str, Any] = {**TrainConfig().to_dict(), **self.fixed}
        for param in self.params:
            if param.active(values):
                values[param.name] = _suggest(trial, param, values)
        return values


def _suggest(trial: Any, p: Param, values: dict[str, Any]) -> Any:
    if p.times is not None:
        factor = trial.suggest_int(factor_name(p), int(p.low), int(p.high))
        return factor * int(values[p.times])
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.options))
    if p.kind in ("int", "int_log"):
        return trial.suggest_int(p.name, int(p.low), int(p.high), log=p.kind == "int_log")
    return trial.suggest_float(p.name, p.low, p.high, log=p.kind == "loguniform")


def _nearest(p: Param, value: Any) -> Any:
    """`value` if `p` allows it, else the allowed value nearest to it (a choice's first
    option when its options are not numbers)."""
    if p.kind == "choice":
        if value in p.options:
            return value
        numeric = all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in p.options)
        if numeric and isinstance(value, (int, float)):
            return min(p.options, key=lambda o: abs(o - value))
        return p.options[0]
    clipped = min(max(value, p.low), p.high)
    return round(clipped) if p.kind.startswith("int") else float(clipped)


def _capped(key: str, value: Any) -> Any:
    cap = SMOKE_CAPS.get(key)
    return value if cap is None or isinstance(value, (bool, str)) else min(value, cap)


def _smoke_param(p: Param) -> Param:
    """`p` with its range inside SMOKE_CAPS (a factor of a relative length stays as it is)."""
    cap = SMOKE_CAPS.get(p.name)
    if cap is None or p.times is not None:
        return p
    if p.kind == "choice":
        small = tuple(o for o in p.options if _capped(p.name, o) == o)
        return dataclasses.replace(p, options=small or (_capped(p.name, min(p.options)),))
    return dataclasses.replace(p, low=min(p.low, cap), high=min(p.high, cap))


def factor_name(p: Param) -> str:
    """The Optuna name of a `times:` param's sampled factor, e.g. `context_per_segment`."""
    return f"{p.name}_per_{p.times}"


def is_factor_name(key: str) -> bool:
    """Whether `key` names a sampled factor (`FIELD_per_FIELD`) rather than a config field."""
    name, sep, base = key.partition("_per_")
    return bool(sep) and name in CONFIG_FIELDS and base in CONFIG_FIELDS


def config_from_trial_params(config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig inside a Tune trial config (dropping the sampled factors)."""
    return TrainConfig.from_dict({k: v for k, v in config.items() if not is_factor_name(k)})


def builtin_spaces() -> dict[str, Path]:
    """Built-in space names -> their files inside the installed package."""
    folder = Path(str(importlib.resources.files("samplegan_tune") / "search_spaces"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def list_spaces() -> dict[str, str]:
    """Built-in space names -> their one-line descriptions."""
    return {name: load_space(path).description for name, path in builtin_spaces().items()}


def resolve_space(name_or_file: str) -> Path:
    """A built-in space name or a path to a YAML file."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserInputError(f"{path}: search space file not found")
        return path
    builtin = builtin_spaces()
    if name_or_file not in builtin:
        names = ", ".join(builtin)
        raise UserInputError(
            f"unknown search space {name_or_file!r}; built-in: {names}, or a FILE.yaml"
        )
    return builtin[name_or_file]


def load_space(name_or_file: str | Path) -> SearchSpace:
    """Read and validate a space; UserInputError naming the file and key on any problem."""
    path = resolve_space(str(name_or_file))
    raw = read_yaml(path, "search space file")
    try:
        return parse_space(path.stem, raw)
    except UserInputError as err:
        raise UserInputError(f"{path}: {err}") from err


def parse_space(name: str, raw: Any) -> SearchSpace:
    """Validate a space read from YAML; UserInputError naming the key on any problem."""
    if not isinstance(raw, dict):
        raise UserInputError("expected a mapping with description, settings, fixed, params")
    _only_keys("top level", raw, ("description", "settings", "fixed", "params"))
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise UserInputError("description: a one-line description is required")
    settings = _parse_settings(raw.get("settings") or {})
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserInputError("fixed: expected a mapping of config keys to values")
    _only_keys("fixed", fixed, CONFIG_FIELDS)
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise UserInputError("params: expected a non-empty mapping of config keys to ranges")
    _only_keys("params", params_raw, CONFIG_FIELDS)
    shared = sorted(set(params_raw) & set(DATA_FIELDS))
    if shared:
        raise UserInputError(
            f"params.{shared[0]}: the data settings {', '.join(DATA_FIELDS)} are shared by "
            "every trial; set them under fixed"
        )
    params = tuple(_parse_param(k, v) for k, v in params_raw.items())
    space = SearchSpace(name, description.strip(), settings, dict(fixed), params)
    _check_order_and_defaults(space)
    return space


# Settings for which 0 means none (no GPU, no limit, no budget, no final fit, no ties).
_ZERO_ALLOWED = ("gpus_per_trial", "max_concurrent", "time_budget", "final_share", "rank_tie")


def _parse_settings(raw: Any) -> SearchSettings:
    if not isinstance(raw, dict):
        raise UserInputError("settings: expected a mapping")
    names = [f.name for f in dataclasses.fields(SearchSettings)]
    _only_keys("settings", raw, names)
    defaults = SearchSettings()
    values = {}
    for key, value in raw.items():
        if key == "stop_after":
            values[key] = _parse_stop_after(value)
            continue
        wanted = type(getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserInputError(f"settings.{key}={value!r}: expected a number")
        if not math.isfinite(value):
            raise UserInputError(f"settings.{key}={value!r}: expected a finite number")
        if wanted is int and value != int(value):
            raise UserInputError(f"settings.{key}={value!r}: expected a whole number")
        if value < 0 or (value == 0 and key not in _ZERO_ALLOWED):
            raise UserInputError(f"settings.{key}={value!r}: must be > 0")
        values[key] = wanted(value)
    settings = dataclasses.replace(defaults, **values)
    if settings.final_share >= 1:
        raise UserInputError(
            f"settings.final_share={settings.final_share}: the final fit's share of the time "
            "budget must be below 1 (0: no final fit)"
        )
    if settings.grace_period > settings.max_reports:
        raise UserInputError(
            f"settings.grace_period={settings.grace_period} exceeds max_reports="
            f"{settings.max_reports}"
        )
    return settings


def _parse_stop_after(raw: Any) -> dict[str, int | None]:
    from samplegan_tune.judge.collapse import ROLLOUT_REASONS  # torch: only when a space names one

    if not isinstance(raw, dict):
        raise UserInputError("settings.stop_after: expected a mapping of detector: steps")
    _only_keys("settings.stop_after", raw, ROLLOUT_REASONS)
    for name, steps in raw.items():
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 0
        ):
            raise UserInputError(
                f"settings.stop_after.{name}={steps!r}: expected adversarial steps ≥ 0, or "
                "null (the detector only flags)"
            )
    return dict(raw)


def _parse_param(name: str, raw: Any) -> Param:
    where = f"params.{name}"
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping such as {{uniform: [0, 1]}}")
    kinds = [k for k in raw if k in KINDS]
    _only_keys(where, raw, (*KINDS, "when", "times"))
    if len(kinds) != 1:
        raise UserInputError(f"{where}: give exactly one distribution of {', '.join(KINDS)}")
    kind, spec = kinds[0], raw[kinds[0]]
    when = _parse_when(where, raw.get("when") or {})
    times = raw.get("times")
    if times is not None and (times not in CONFIG_FIELDS or kind != "int"):
        raise UserInputError(f"{where}.times={times!r}: needs a config key and an int range")
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            raise UserInputError(f"{where}.choice: expected a non-empty list")
        return Param(name, kind, options=tuple(spec), when=when)
    low, high = _parse_range(where, kind, spec)
    return Param(name, kind, low, high, when=when, times=times)


def _parse_range(where: str, kind: str, spec: Any) -> tuple[float, float]:
    ok = isinstance(spec, list) and len(spec) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
    if not ok:
        raise UserInputError(f"{where}.{kind}: expected [low, high], got {spec!r}")
    low, high = float(spec[0]), float(spec[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UserInputError(f"{where}.{kind}: impossible range [{low:g}, {high:g}]")
    if kind in ("loguniform", "int_log") and low <= 0:
        raise UserInputError(f"{where}.{kind}: a log range needs low > 0, got {low:g}")
    if kind.startswith("int") and (low != int(low) or high != int(high)):
        raise UserInputError(f"{where}.{kind}: bounds must be whole numbers")
    return low, high


def _parse_when(where: str, raw: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}.when: expected a mapping of key to value(s)")
    _only_keys(f"{where}.when", raw, CONFIG_FIELDS)
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in raw.items()}


def _check_order_and_defaults(space: SearchSpace) -> None:
    """Conditions and factors may name a param only after it; every range edge must validate."""
    names = [p.name for p in space.params]
    for i, p in enumerate(space.params):
        for key in [*p.when, *([p.times] if p.times else [])]:
            if key in names[i:]:
                raise UserInputError(f"params.{p.name}: refers to {key!r}, which must come before")
    try:
        TrainConfig.from_dict(space.fixed)
    except UserInputError as err:
        raise UserInputError(f"fixed: {err}") from err
    for p in space.params:
        for value in _corners(p, space.fixed):
            try:
                TrainConfig.from_dict({**space.fixed, **_enabled(space, p, value), p.name: value})
            except UserInputError as err:
                raise UserInputError(f"params.{p.name}: {err}") from err


def _enabled(space: SearchSpace, p: Param, value: Any) -> dict[str, Any]:
    """The first corner of each param that `p = value` switches on (its `when` names p): a
    rule linking fields (e.g. latent needs ae_pretrain_steps > 0) sees both sampled."""
    out = {}
    for q in space.params:
        corners = _corners(q, space.fixed)
        if p.name in q.when and value in q.when[p.name] and corners:
            out[q.name] = corners[0]
    return out


def _corners(p: Param, fixed: dict[str, Any]) -> list[Any]:
    """Values at the edges of a param's range, where a bad range shows (checked vs `fixed`)."""
    if p.times is not None:
        base = fixed.get(p.times, getattr(TrainConfig(), p.times))
        return [int(p.low) * base, int(p.high) * base] if isinstance(base, int) else []
    if p.kind == "choice":
        return list(p.options)
    if p.kind.startswith("int"):
        return [int(p.low), int(p.high)]
    return [p.low, p.high]


def _only_keys(where: str, raw: dict, allowed: tuple[str, ...] | list[str]) -> None:
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise UserInputError(
            f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(map(str, allowed))}"
        )
