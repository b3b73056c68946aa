from __future__ import annotations

import pytest
import torch

from samplegan_tune.config import TrainConfig
from samplegan_tune.models import ContinuationModel, build_discriminators, phase_shuffle


def _run(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    model = ContinuationModel(cfg)
    context = 0.1 * torch.randn(3, cfg.context)
    return model(context, torch.randn(3, cfg.noise_dim))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"seed_source": "reconstruction"},
        {"gain_mode": "free"},
        {"noise_dim": 0},
        {"g_upsample": 4, "g_depth": 2},
        {"segment": 50, "context": 300, "crossfade": 10},  # lengths that divide nothing
        {"ae_depth": 3, "context": 1000},
    ],
)
def test_continuation_shapes(tiny: TrainConfig, changes: dict) -> None:
    cfg = tiny.replace(**changes)
    out = _run(cfg)
    assert out["fake"].shape == (3, cfg.segment + cfg.crossfade)
    assert out["latent"].shape == (3, cfg.latent)
    assert out["recon"].shape == out["ae_in"].shape == (3, cfg.context)
    assert out["fake"].abs().max() <= 1.0 and torch.isfinite(out["fake"]).all()


def test_context_gain_mode_tracks_the_context_level(tiny: TrainConfig) -> None:
    """G emits at the context's level within max_gain_db, whatever that level is."""
    model = ContinuationModel(tiny)
    noise = torch.randn(2, tiny.noise_dim)
    for level_db in (-40.0, -10.0):
        context = torch.randn(2, tiny.context)
        context = context / context.pow(2).mean(-1, keepdim=True).sqrt() * 10 ** (level_db / 20)
        fake = model(context, noise)["fake"]
        fake_db = 10 * torch.log10(fake.pow(2).mean(-1))
        assert (fake_db - level_db).abs().max() <= tiny.max_gain_db + 0.5


@pytest.mark.parametrize("kind", ["single", "multiscale", "multiperiod"])
@pytest.mark.parametrize("norm", ["spectral", "weight", "none"])
def test_discriminator_variants_return_logits_and_features(
    tiny: TrainConfig, kind: str, norm: str
) -> None:
    cfg = tiny.replace(d_kind=kind, d_norm=norm, phase_shuffle=2)
    seg_d, seq_d = build_discriminators(cfg)
    x = torch.randn(5, cfg.segment + cfg.crossfade)
    logits, features = seg_d(x, torch.randn(5, cfg.latent))
    expected = {"single": 1, "multiscale": 3, "multiperiod": 3}[kind]
    assert len(logits) == expected and all(lg.shape[0] == 5 for lg in logits)
    assert len(features) == expected * cfg.d_depth
    seq_logits, _ = seq_d(torch.randn(5, cfg.rollout_steps * cfg.segment))
    assert seq_logits.shape[0] == 5


def test_context_conditioning_changes_the_verdict(tiny: TrainConfig) -> None:
    seg_d, _ = build_discriminators(tiny.replace(d_context=True, phase_shuffle=0))
    x = torch.randn(2, tiny.segment)
    a, _ = seg_d(x, torch.randn(2, tiny.latent))
    b, _ = seg_d(x, torch.randn(2, tiny.latent))
    assert not torch.allclose(a[0], b[0])


def test_no_sequence_discriminator_when_its_weight_is_zero(tiny: TrainConfig) -> None:
    assert build_discriminators(tiny.replace(lambda_seq_adv=0.0))[1] is None
    assert build_discriminators(tiny.replace(rollout_steps=1))[1] is None


def test_phase_shuffle_keeps_shape_and_content() -> None:
    torch.manual_seed(3)
    x = torch.arange(20.0).view(1, 1, 20)
    shuffled = phase_shuffle(x, 2)
    assert shuffled.shape == x.shape
    shift = int((shuffled[0, 0, 10] - x[0, 0, 10]).item())
    assert abs(shift) <= 2
    assert torch.equal(shuffled[0, 0, 3:17], x[0, 0, 3 + shift : 17 + shift])
