from __future__ import annotations

import torch

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import ContinuationModel
from samplegan_tune.train.rollout import crossfade_join, fit_context, rollout


def test_rollout_length_and_determinism(tiny: TrainConfig) -> None:
    torch.manual_seed(0)
    model = ContinuationModel(tiny).eval()
    context = 0.1 * torch.randn(2, 100)  # shorter than the context: left-padded
    a = rollout(model, context, 1000, seed=5)
    assert a.shape == (2, 1000)
    assert torch.equal(a, rollout(model, context, 1000, seed=5))
    assert not torch.equal(a, rollout(model, context, 1000, seed=6))
    assert torch.isfinite(a).all()


def _jumps(audio: torch.Tensor, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute sample-to-sample steps at segment joins and everywhere else."""
    steps = (audio[:, 1:] - audio[:, :-1]).abs()
    at_join = torch.zeros(steps.shape[-1], dtype=torch.bool)
    at_join[segment - 1 :: segment] = True
    return steps[:, at_join], steps[:, ~at_join]


def test_crossfade_removes_clicks_between_offset_segments() -> None:
    segment, fade = 64, 16
    t = torch.arange(segment + fade, dtype=torch.float32)
    pieces, pending, raw = [], None, []
    for k in range(8):
        # Each step is smooth but sits at its own DC offset: a hard join would click.
        new = (0.3 * torch.sin(0.2 * (t + k * segment)) + 0.2 * (-1) ** k)[None]
        emitted, pending = crossfade_join(pending, new, segment)
        pieces.append(emitted)
        raw.append(new[:, :segment])
    joined, hard = torch.cat(pieces, 1), torch.cat(raw, 1)
    join, inside = _jumps(joined, segment)
    hard_join, _ = _jumps(hard, segment)
    assert join.max() <= 1.5 * inside.max()
    assert hard_join.max() > 3 * inside.max()


def test_model_rollout_has_no_boundary_clicks(tiny: TrainConfig) -> None:
    torch.manual_seed(0)
    model = ContinuationModel(tiny).eval()
    audio = rollout(model, 0.1 * torch.randn(4, tiny.context), 40 * tiny.segment, seed=0)
    join, inside = _jumps(audio, tiny.segment)
    assert join.mean() <= 1.5 * inside.mean()


def test_fit_context_pads_left_and_crops_to_the_end() -> None:
    x = torch.arange(5.0)[None]
    assert fit_context(x, 3).tolist() == [[2.0, 3.0, 4.0]]
    assert fit_context(x, 7).tolist() == [[0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0]]


def test_rollout_level_stays_anchored_to_the_primer(tiny: TrainConfig) -> None:
    """The seed paper's failure (a transient, then silence) cannot happen in gain_mode=context:
    even an untrained model's 100-segment rollout stays within max_gain_db of the primer."""
    torch.manual_seed(0)
    model = ContinuationModel(tiny.replace(gain_mode="context", max_gain_db=6.0)).eval()
    for level_db in (-35.0, -12.0):
        primer = torch.randn(1, tiny.context)
        primer = primer / primer.pow(2).mean().sqrt() * 10 ** (level_db / 20)
        audio = rollout(model, primer, 100 * tiny.segment, seed=0)
        per_segment = 10 * torch.log10(audio.view(-1, tiny.segment).pow(2).mean(-1))
        assert (per_segment - level_db).abs().max() <= 6.0 + 1.0
    learned = ContinuationModel(tiny.replace(gain_mode="learned", max_gain_db=6.0)).eval()
    audio = rollout(learned, primer, 100 * tiny.segment, seed=0)
    per_segment = 10 * torch.log10(audio.view(-1, tiny.segment).pow(2).mean(-1))
    assert (per_segment - level_db).abs().max() <= 6.0 + 1.0  # the bound is its floor too
    free = ContinuationModel(tiny.replace(gain_mode="free")).eval()
    audio = rollout(free, primer, 100 * tiny.segment, seed=0)
    per_segment = 10 * torch.log10(audio.view(-1, tiny.segment).pow(2).mean(-1))
    assert (per_segment - level_db).abs().max() > 7.0  # the naive mode is not held to it


def test_generation_context_noise_is_deterministic_and_used(tiny: TrainConfig) -> None:
    cfg = tiny.replace(ctx_noise_max=0.5, ctx_noise_gen=0.2)
    torch.manual_seed(0)
    noisy = ContinuationModel(cfg).eval()
    clean = ContinuationModel(cfg.replace(ctx_noise_gen=0.0))
    clean.load_state_dict(noisy.state_dict())
    clean.eval()
    context = 0.1 * torch.randn(2, tiny.context)
    a = rollout(noisy, context, 5 * tiny.segment, seed=3)
    assert torch.equal(a, rollout(noisy, context, 5 * tiny.segment, seed=3))
    assert not torch.allclose(a, rollout(clean, context, 5 * tiny.segment, seed=3))
