from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.tuning.space import (
    SMOKE_CAPS,
    builtin_spaces,
    config_from_trial_params,
    list_spaces,
    load_space,
    parse_space,
)

GOOD = {
    "description": "test space",
    "settings": {"num_samples": 3, "max_reports": 2, "grace_period": 1},
    "fixed": {"segment": 128},
    "params": {
        "adv_loss": {"choice": ["hinge", "wgan-gp"]},
        "lambda_gp": {"uniform": [1, 20], "when": {"adv_loss": "wgan-gp"}},
        "context": {"times": "segment", "int": [2, 8]},
        "lr_g": {"loguniform": [1e-5, 1e-2]},
    },
}


def test_builtin_spaces_validate_and_sample_valid_configs() -> None:
    spaces = list_spaces()
    assert {"smoke", "narrow", "wide"} <= set(spaces) and all(spaces.values())
    for name in spaces:
        space = load_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        valid = 0
        for _ in range(20):
            try:
                config_from_trial_params(space.sample(study.ask()))
                valid += 1
            except UserInputError:
                pass
        assert valid == 20, f"{name}: every sampled configuration must be valid"


def test_conditional_and_relative_params() -> None:
    space = parse_space("t", GOOD)
    plain = optuna.trial.FixedTrial({"adv_loss": "hinge", "context_per_segment": 4, "lr_g": 1e-3})
    values = space.sample(plain)
    assert values["context"] == 512 and values["lambda_gp"] == 10.0  # the default: not sampled
    gp = optuna.trial.FixedTrial(
        {"adv_loss": "wgan-gp", "lambda_gp": 3.0, "context_per_segment": 2, "lr_g": 1e-3}
    )
    cfg = config_from_trial_params(space.sample(gp))
    assert cfg.lambda_gp == 3.0 and cfg.context == 256 and cfg.segment == 128


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"params": {"lr_gen": {"uniform": [0, 1]}}}, ["params", "'lr_gen'"]),
        ({"params": {"lr_g": {"uniform": [1, 0.5]}}}, ["params.lr_g", "impossible range"]),
        ({"params": {"lr_g": {"loguniform": [0, 1]}}}, ["params.lr_g", "low > 0"]),
        ({"params": {"lr_g": {"gauss": [0, 1]}}}, ["params.lr_g", "'gauss'"]),
        ({"params": {"adv_loss": {"choice": ["hinge", "wgan"]}}}, ["params.adv_loss", "wgan"]),
        ({"params": {"sample_rate": {"choice": [8000, 16000]}}}, ["sample_rate", "fixed"]),
        ({"fixed": {"segmnt": 3}}, ["fixed", "'segmnt'"]),
        ({"settings": {"num_samples": 0}}, ["settings.num_samples"]),
        ({"settings": {"final_share": 1.0}}, ["settings.final_share", "below 1"]),
        ({"settings": {"startup_trials": 0}}, ["settings.startup_trials", "> 0"]),
        ({"settings": {"startup_trials": 2.5}}, ["settings.startup_trials", "whole number"]),
        ({"settings": {"time_budget": float("nan")}}, ["settings.time_budget", "finite"]),
        ({"settings": {"time_budget": float("inf")}}, ["settings.time_budget", "finite"]),
        ({"settings": {"num_samples": float("inf")}}, ["settings.num_samples", "finite"]),
        ({"settings": {"stop_after": {"loopin": 300}}}, ["settings.stop_after", "'loopin'"]),
        ({"settings": {"stop_after": {"looping": -1}}}, ["stop_after.looping", "null"]),
        ({"description": ""}, ["description"]),
        ({"extra": 1}, ["'extra'"]),
    ],
)
def test_bad_space_files_name_file_and_key(tmp_path: Path, change: dict, words: list) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(UserInputError) as err:
        load_space(path)
    message = str(err.value)
    assert str(path) in message and all(w in message for w in words), message


def test_condition_on_a_later_param_is_refused() -> None:
    params = {"lambda_gp": GOOD["params"]["lambda_gp"], "adv_loss": GOOD["params"]["adv_loss"]}
    with pytest.raises(UserInputError, match="must come before"):
        parse_space("t", {**GOOD, "params": params})


def test_unknown_space_name_lists_the_valid_ones() -> None:
    with pytest.raises(UserInputError, match="smoke"):
        load_space("nope")


def test_every_param_form_survives_rays_config_shape() -> None:
    """What OptunaSearch hands a trial: the captured params plus the returned dict, passed
    through Ray's unflatten_dict (which nests any key holding a '/')."""
    from ray.tune.utils.util import unflatten_dict

    space = parse_space("t", GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        values = space.sample(trial)
        config = unflatten_dict({**trial.params, **values})
        cfg = config_from_trial_params(config)
        assert cfg.context == trial.params["context_per_segment"] * cfg.segment
        assert set(trial.params) <= {"adv_loss", "lambda_gp", "context_per_segment", "lr_g"}


def test_builtin_spaces_ship_inside_the_package() -> None:
    import samplegan_tune

    package = Path(samplegan_tune.__file__).parent
    for name, path in builtin_spaces().items():
        assert path.parent == package / "search_spaces" and load_space(name).params


def test_smoke_caps_sizes_and_keeps_every_param() -> None:
    for name in ("smoke", "narrow", "wide"):
        full, small = load_space(name), load_space(name).smoke()
        assert [p.name for p in small.params] == [p.name for p in full.params]
        assert small.settings.max_reports <= 2 and small.settings.steps_per_report <= 8
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(20):
            cfg = config_from_trial_params(small.sample(study.ask()))
            assert all(getattr(cfg, k) <= cap for k, cap in SMOKE_CAPS.items() if k != "context")
            assert cfg.context <= 16 * SMOKE_CAPS["segment"]


def test_a_family_choice_needs_its_stage_one_length() -> None:
    """Choosing the latent family needs ae_pretrain_steps > 0: refused when no param gives it,
    accepted when a param conditioned on the family does, and every sample then validates."""
    family = {"model_family": {"choice": ["segment", "latent"]}}
    with pytest.raises(UserInputError, match="params.model_family: .*ae_pretrain_steps"):
        parse_space("mine", {"description": "x", "params": family})
    stage = {"ae_pretrain_steps": {"int": [10, 50], "when": {"model_family": ["latent"]}}}
    space = parse_space("mine", {"description": "x", "params": {**family, **stage}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [config_from_trial_params(space.sample(study.ask())) for _ in range(12)]
    assert {c.model_family for c in configs} == {"segment", "latent"}
    assert all((c.ae_pretrain_steps > 0) == (c.model_family == "latent") for c in configs)


@pytest.mark.parametrize(
    ("name", "clipped"),
    [("narrow", {}), ("wide", {"crossfade": 64, "d_warmup_steps": 0, "tbptt": 1})],
)
def test_the_baseline_is_the_defaults_clipped_into_the_space(name: str, clipped: dict) -> None:
    """The point a search tries first: the measured best TrainConfig, each value the nearest
    the space allows (wide has no crossfade 60, no 100-step D warm-up, tbptt only 0 or 1)."""
    space = load_space(name)
    values = space.sample(optuna.trial.FixedTrial(space.baseline()))
    assert TrainConfig.from_dict(values) == TrainConfig(**clipped)


def test_a_space_file_naming_a_key_twice_is_refused(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml").read_text()
    space = tmp_path / "twice.yaml"  # a second lr_g would have replaced the first
    space.write_text(text.replace("params:\n", "params:\n  lr_g: {loguniform: [1.0, 2.0]}\n"))
    with pytest.raises(UserInputError, match=r"twice\.yaml: duplicate key 'lr_g'"):
        load_space(space)
