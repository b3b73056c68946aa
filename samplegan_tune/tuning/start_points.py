"""`search --try K=V[,K=V]`: a configuration the searcher tries first, checked against the
search space before any work, so a point the space cannot take is refused in one line
instead of being silently dropped by Optuna, failing mid-search, or running off the range.

A point names the space's Optuna params: a sampled config field by its name (`lr_g=1e-3`),
a relative length by its factor (`context_per_segment=6`).
"""

from __future__ import annotations

import math
from typing import Any

from samplegan_tune.core.config import TrainConfig, parse_set
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.tuning.space import DATA_FIELDS, Param, SearchSpace, factor_name

_UNDECIDED = object()  # a param the sampler picks: no `when` can be known to hold for it


def parse_point(text: str, space: SearchSpace) -> dict[str, Any]:
    """`K=V[,K=V]` -> {Optuna param name: value}, every key one the space samples and every
    value inside its range or among its choices; UserInputError naming the key otherwise."""
    point: dict[str, Any] = {}
    for item in (part for part in text.split(",") if part.strip()):
        key, value = _parse_item(text, item)
        if key in point:
            raise UserInputError(f"--try {text!r}: {key} is given twice; give each key once")
        point[key] = value
    if not point:
        raise UserInputError(f"--try {text!r}: expected key=value[,key=value]")
    params = {optuna_name(p): p for p in space.params}
    for key, value in point.items():
        if key not in params:
            raise UserInputError(f"--try {text!r}: {_why_not_sampled(key, space, params)}")
        point[key] = _check_value(text, key, params[key], value)
    _check_active(text, point, space)
    return point


def optuna_name(p: Param) -> str:
    """The name a point gives `p` by: its field, or for a relative length its factor."""
    return factor_name(p) if p.times is not None else p.name


def _parse_item(text: str, item: str) -> tuple[str, Any]:
    try:
        return parse_set(item)
    except UserInputError as err:
        raise UserInputError(
            f"--try {text!r}: cannot read {item.strip()!r}; expected key=value with a number, "
            "word or bool, e.g. --try lr_g=1e-3,adv_loss=lsgan"
        ) from err


def _why_not_sampled(key: str, space: SearchSpace, params: dict[str, Param]) -> str:
    """Why `key` cannot be tried in `space`, and the keys that can."""
    allowed = f"this space samples {', '.join(params)}"
    relative = next((p for p in space.params if p.times is not None and p.name == key), None)
    if relative is not None:
        return (
            f"{key} is sampled as a multiple of {relative.times}; give {factor_name(relative)}"
            f"=N with N in {int(relative.low)}...{int(relative.high)}"
        )
    if key in DATA_FIELDS:
        return f"{key} is a data setting every trial shares, not a searched key; {allowed}"
    if key in space.fixed:
        return f"{key} is fixed by the space at {space.fixed[key]!r}; {allowed}"
    if key in TrainConfig.__dataclass_fields__:
        return f"{key} is not searched by this space (every trial has its default); {allowed}"
    return f"unknown key {key!r}; {allowed}"


def _check_value(text: str, key: str, p: Param, value: Any) -> Any:
    """`value` as the space's param `p` takes it; UserInputError if the space never would."""
    if p.kind == "choice":
        for option in p.options:  # True == 1 in Python: a bool matches only a bool
            if option == value and isinstance(option, bool) == isinstance(value, bool):
                return option
        options = ", ".join(map(str, p.options))
        raise UserInputError(f"--try {text!r}: {key}={value} is not one of {options}")
    whole = p.kind.startswith("int") or p.times is not None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value)) or (whole and value != int(value)):
        what = "a whole number" if whole else "a finite number"
        raise UserInputError(
            f"--try {text!r}: {key}={value} is not {what}; allowed: {_range(p, whole)}"
        )
    if not p.low <= value <= p.high:
        raise UserInputError(
            f"--try {text!r}: {key}={value} is outside the space's range {_range(p, whole)}"
        )
    return int(value) if whole else float(value)


def _range(p: Param, whole: bool) -> str:
    if whole:
        return f"{int(p.low)}...{int(p.high)}"
    return f"{p.low:g}...{p.high:g}" + (" (log scale)" if p.kind == "loguniform" else "")


def _check_active(text: str, point: dict[str, Any], space: SearchSpace) -> None:
    """Refuse a key that the point's own values (or the space's fixed ones) switch off, or
    whose condition the sampler would decide: Optuna would drop it without a word."""
    values: dict[str, Any] = {**TrainConfig().to_dict(), **space.fixed}
    for p in space.params:  # in the space's order, as `SearchSpace.sample` decides them
        name = optuna_name(p)
        if name not in point:
            values[p.name] = _UNDECIDED if p.active(values) else values[p.name]
        elif not p.active(values):
            needs = " and ".join(f"{k} is {'/'.join(map(str, v))}" for k, v in p.when.items())
            add = ",".join(f"{k}={v[0]}" for k, v in p.when.items())
            raise UserInputError(
                f"--try {text!r}: {name} is sampled only when {needs}; add {add} to the point"
            )
        elif p.times is None:
            values[p.name] = point[name]
        else:  # a multiple of a length the sampler may still pick
            base = values[p.times]
            values[p.name] = _UNDECIDED if base is _UNDECIDED else point[name] * base
