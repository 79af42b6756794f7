"""A search space, and its trials drawn up front from Tune's own sampling.

A space maps dotted config keys to one of Tune's domains, written in YAML as
``{loguniform: [low, high]}``, ``{uniform: [low, high]}``, ``{randint: [low, high]}``
(high excluded) or ``{choice: [a, b, ...]}``. Trial ``i`` of a search is drawn from a
generator seeded by (seed, i): the same command draws the same trials, each a config
with its own run key, so a search runs, skips and resumes its trials as a grid does
(``core/grid.py``). A draw the workload's config refuses (top_k above num_experts), or
one that repeats an earlier trial, is drawn again from (seed, i, attempt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from raycell.core.config import Seed, Strict, get_dotted
from raycell.core.errors import RaycellError

Kind = Literal["loguniform", "uniform", "randint", "choice"]
ATTEMPTS = 100  # draws of one trial before the space counts as one the config refuses


def _check_domain(key: str, spec: dict[str, list]) -> dict[str, list]:
    if len(spec) != 1:
        raise ValueError(f"{key}: give one of loguniform, uniform, randint, choice")
    (kind, values), = spec.items()
    if kind == "choice":
        if not values:
            raise ValueError(f"{key}: choice needs at least one value")
        return spec
    if len(values) != 2 or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"{key}: {kind} takes [low, high]")
    low, high = values
    if not low < high:
        raise ValueError(f"{key}: {kind} low {low} is not below high {high}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{key}: loguniform needs low > 0, got {low}")
    return spec


class SearchSpace(Strict):
    """What a search draws: ``samples`` trials over ``space``, seeded by ``seed``."""

    space: dict[str, dict[Kind, list]] = Field(min_length=1)
    samples: int = Field(8, ge=1)
    seed: Seed = 0

    @field_validator("space")
    @classmethod
    def _domains(cls, space: dict[str, dict[Kind, list]]) -> dict[str, dict[Kind, list]]:
        return {key: _check_domain(key, spec) for key, spec in space.items()}


def domain(spec: dict[str, list]):
    """Tune's domain of one entry of a space."""
    from ray import tune

    (kind, values), = spec.items()
    return tune.choice(values) if kind == "choice" else getattr(tune, kind)(*values)


def check_keys(raw: dict[str, Any], keys: list[str], workload: str) -> None:
    """Every dotted key of a space must name a setting of the workload's config."""
    for key in keys:
        try:
            get_dotted(raw, key)
        except (KeyError, TypeError):
            raise RaycellError(f"search.space: {key!r} is not a setting of the {workload} "
                               "config") from None


def refusal(configure: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], str | None]:
    """``draw``'s ``accepts`` from a function that builds a trial's config: why the
    config refuses a trial (pydantic's first message), None when it takes it."""
    def why(trial: dict[str, Any]) -> str | None:
        try:
            configure(trial)
        except ValidationError as err:
            return err.errors()[0]["msg"]
        return None

    return why


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for YAML and MLflow)."""
    return value.item() if isinstance(value, np.generic) else value


def draw(search: SearchSpace, accepts: Callable[[dict[str, Any]], str | None],
         incumbent: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The search's trials: ``{dotted key: value}`` each. ``accepts(trial)`` returns why
    the workload's config refuses a trial (None: it takes it). ``incumbent``: the
    config's own values, trial 0 (Tune's points_to_evaluate), so a search ends at or
    below what the user has; the other trials are drawn as without it."""
    domains = {key: domain(spec) for key, spec in search.space.items()}
    trials = [incumbent] if incumbent is not None else []
    for i in range(len(trials), search.samples):
        for attempt in range(ATTEMPTS):
            rng = np.random.default_rng([search.seed, i, attempt])
            trial = {key: plain(d.sample(random_state=rng)) for key, d in domains.items()}
            why = "drawn already" if trial in trials else accepts(trial)
            if why is None:
                trials.append(trial)
                break
        else:
            if why == "drawn already":
                raise RaycellError(f"search space: fewer than {search.samples} distinct "
                                   f"trials found in {ATTEMPTS} draws: lower --samples")
            raise RaycellError(f"search space: {ATTEMPTS} draws of trial {i} were all refused "
                               f"({why})")
    return trials
