from __future__ import annotations

import math

import pytest

from samplegan_tune.core.config import TrainConfig, load_config, parse_set
from samplegan_tune.core.errors import UserInputError


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


def test_a_key_set_twice_is_refused_not_last_wins() -> None:
    with pytest.raises(UserInputError, match="--set lr_g: given twice"):
        load_config(None, ["lr_g=1e-3", "segment=128", "lr_g=2e-4"])


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
    twice = tmp_path / "twice.yaml"  # YAML would let the last win, silently
    twice.write_text("lr_g: 1.0e-3\nsegment: 256\nlr_g: 5.0e-4\n")
    with pytest.raises(UserInputError, match=r"twice\.yaml: duplicate key 'lr_g' on lines 1 and 3"):
        load_config(twice)


# The config keys of checkpoints written before issue 11's knobs (noise_film, gain_mode
# learned, level_tolerance_db, d_context_tail, tbptt, ctx_noise_*, lambda_ms, ms_target).
OLD_KEYS = [
    "sample_rate",
    "normalise_dbfs",
    "holdout_fraction",
    "segment",
    "context",
    "crossfade",
    "latent",
    "ae_channels",
    "ae_depth",
    "seed_source",
    "noise_dim",
    "g_channels",
    "g_depth",
    "g_upsample",
    "gain_mode",
    "max_gain_db",
    "d_kind",
    "d_channels",
    "d_depth",
    "d_norm",
    "d_context",
    "phase_shuffle",
    "batch_size",
    "lr_g",
    "lr_d",
    "lr_ae",
    "beta1",
    "beta2",
    "adv_loss",
    "n_critic",
    "d_warmup_steps",
    "ae_pretrain_steps",
    "grad_clip",
    "rollout_steps",
    "scheduled_sampling",
    "lambda_adv",
    "lambda_seq_adv",
    "lambda_fm",
    "lambda_recon_l1",
    "lambda_recon_stft",
    "lambda_ae",
    "lambda_loudness",
    "lambda_gp",
    "seed",
]


def test_old_checkpoint_configs_still_load() -> None:
    defaults = TrainConfig().to_dict()
    old = {key: defaults[key] for key in OLD_KEYS}
    cfg = TrainConfig.from_dict({**old, "rollout_steps": 6})
    assert cfg.rollout_steps == 6 and cfg.tbptt == TrainConfig().tbptt
    assert cfg.ctx_noise_gen == 0.0 and cfg.d_context_tail == TrainConfig().d_context_tail


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"ctx_noise_max": 0.1, "ctx_noise_gen": 0.2}, "ctx_noise_gen"),
        ({"tbptt": -1}, "tbptt"),
        ({"d_context_tail": -1}, "d_context_tail"),
        ({"gain_mode": "loud"}, "gain_mode"),
        ({"model_family": "wavenet"}, "model_family"),
        ({"model_family": "latent"}, "ae_pretrain_steps"),  # stage 1 cannot be skipped
        ({"model_family": "latent", "ae_pretrain_steps": 10, "frame_latent": 0}, "frame_latent"),
    ],
)
def test_new_knob_ranges(values: dict, key: str) -> None:
    with pytest.raises(UserInputError, match=key):
        TrainConfig.from_dict(values)


def test_tail_and_tbptt_are_capped_so_spaces_can_vary_them_freely() -> None:
    cfg = TrainConfig.from_dict({"context": 1024, "d_context_tail": 2048, "rollout_steps": 4})
    assert cfg.context_tail == 1024 and cfg.replace(d_context_tail=0).context_tail == 0
    assert cfg.replace(tbptt=9).tbptt_chunk == 4 and cfg.replace(tbptt=0).tbptt_chunk == 4
    assert cfg.replace(tbptt=2).tbptt_chunk == 2
