"""A search's trials: drawn up front from Tune's domains, the same for the same seed, inside
their ranges, redrawn where the config refuses them; bad spaces refused in one line."""

import numpy as np
import pytest
from pydantic import ValidationError

from raycell.core.errors import RaycellError
from raycell.core.search import SearchSpace, draw

SPACE = {"training.lr": {"loguniform": [1e-4, 1e-2]},
         "model.num_experts": {"choice": [2, 4, 8]},
         "model.top_k": {"randint": [1, 4]},
         "training.dropout": {"uniform": [0.0, 0.5]}}


def _space(**settings):
    return SearchSpace.model_validate({"space": SPACE, "samples": 40, **settings})


def test_trials_are_the_seeds_and_stay_in_their_ranges():
    trials = draw(_space(seed=3), lambda trial: None)
    assert trials == draw(_space(seed=3), lambda trial: None)  # a rerun draws the same
    assert trials != draw(_space(seed=4), lambda trial: None)
    lr = np.array([t["training.lr"] for t in trials])
    assert ((1e-4 <= lr) & (lr <= 1e-2)).all() and lr.min() < 1e-3 < lr.max()
    assert {t["model.num_experts"] for t in trials} == {2, 4, 8}
    assert {t["model.top_k"] for t in trials} == {1, 2, 3}  # randint: high excluded
    assert all(type(t["model.num_experts"]) is int for t in trials)  # plain, for YAML
    # Trial i does not depend on how many were drawn: a larger search extends a smaller.
    assert draw(_space(seed=3, samples=5), lambda trial: None) == trials[:5]


def test_the_config_s_own_setting_is_trial_0_and_the_others_stay_as_drawn():
    mine = {"training.lr": 1e-3, "model.num_experts": 4, "model.top_k": 2,
            "training.dropout": 0.1}
    trials = draw(_space(seed=3), lambda trial: None, incumbent=mine)
    assert trials[0] == mine and len(trials) == 40
    assert trials[1:] == draw(_space(seed=3), lambda trial: None)[1:]


def test_repeated_draws_are_drawn_again_and_a_space_too_small_is_an_error():
    small = SearchSpace.model_validate({"space": {"a.b": {"choice": [1, 2, 3]}}, "samples": 3})
    assert sorted(t["a.b"] for t in draw(small, lambda trial: None)) == [1, 2, 3]
    with pytest.raises(RaycellError, match="fewer than 4 distinct trials"):
        draw(small.model_copy(update={"samples": 4}), lambda trial: None)


def test_refused_draws_are_drawn_again_and_an_impossible_space_is_an_error():
    def top_k_fits(trial):
        fits = trial["model.top_k"] <= trial["model.num_experts"] // 2
        return None if fits else "top_k above num_experts / 2"

    trials = draw(_space(), top_k_fits)
    assert len(trials) == 40 and all(top_k_fits(t) is None for t in trials)
    with pytest.raises(RaycellError, match="all refused .*never"):
        draw(_space(), lambda trial: "never")


@pytest.mark.parametrize(("space", "message"), [
    ({}, "at least 1"),
    ({"training.lr": {"loguniform": [1e-2, 1e-4]}}, "low 0.01 is not below high 0.0001"),
    ({"training.lr": {"loguniform": [0, 1]}}, "loguniform needs low > 0"),
    ({"training.lr": {"uniform": [1]}}, r"takes \[low, high\]"),
    ({"model.top_k": {"choice": []}}, "at least one value"),
    ({"model.top_k": {"normal": [0, 1]}}, "loguniform"),
    ({"model.top_k": {"choice": [1], "randint": [1, 2]}}, "give one of"),
])
def test_bad_spaces_are_refused(space, message):
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate({"space": space})


def test_no_samples_is_refused():
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        _space(samples=0)
