from __future__ import annotations

import math

import pytest

from samplegan_tune.config import TrainConfig, load_config, parse_set
from samplegan_tune.errors import UserInputError


def test_defaults_are_valid_and_round_trip() -> None:
    cfg = TrainConfig()
    cfg.validate()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.window == cfg.context + cfg.rollout_steps * cfg.segment + cfg.crossfade


def test_unknown_key_is_named() -> None:
    with pytest.raises(UserInputError, match="'lr_gen'"):
        TrainConfig.from_dict({"lr_gen": 1e-3})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("context", 256, "> segment"),
        ("lr_g", -1e-3, "1e-07"),
        ("adv_loss", "wgan", "hinge"),
        ("scheduled_sampling", 1.5, "0.0 ... 1.0"),
        ("lambda_fm", -1.0, ">= 0.0"),
        ("crossfade", 1000, "0 ... segment"),
    ],
)
def test_out_of_range_names_key_value_and_allowed(key: str, value: object, allowed: str) -> None:
    with pytest.raises(UserInputError) as err:
        TrainConfig.from_dict({"segment": 512, key: value})
    message = str(err.value)
    assert key in message and repr(value) in message and allowed in message


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(UserInputError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": "big"})
    with pytest.raises(UserInputError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 2.5})


def test_parse_set_reads_yaml_scalars() -> None:
    assert parse_set("lr_g=1e-4") == ("lr_g", 1e-4)
    assert parse_set("d_context=false") == ("d_context", False)
    assert parse_set("adv_loss=wgan-gp") == ("adv_loss", "wgan-gp")
    for bad in ("lr_g", "=3", "lr_g=", "lr_g=[1, 2]"):
        with pytest.raises(UserInputError, match="--set"):
            parse_set(bad)


def test_load_config_layers_file_then_sets(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr_g: 0.001\nsegment: 256\n")
    cfg = load_config(path, ["segment=128"])
    assert cfg.lr_g == 1e-3 and cfg.segment == 128
    assert math.isnan(load_config(None, ["normalise_dbfs=nan"]).normalise_dbfs)


def test_load_config_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("segmnt: 3\n")
    with pytest.raises(UserInputError, match=r"bad\.yaml.*'segmnt'"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserInputError, match="mapping"):
        load_config(listy)
    with pytest.raises(UserInputError, match="not found"):
        load_config(tmp_path / "missing.yaml")
