from __future__ import annotations

import pytest
import torch

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import (
    ContinuationModel,
    LatentModel,
    augment_context,
    build_discriminators,
    phase_shuffle,
)
from samplegan_tune.models.segment import ContextAutoencoder
from samplegan_tune.train import losses


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
        {"gain_mode": "learned", "noise_film": True},
        {"noise_dim": 0},
        {"noise_dim": 0, "noise_film": True},
        {"g_upsample": 4, "g_depth": 2},
        {"segment": 50, "context": 300, "crossfade": 10},  # lengths that divide nothing
        {"ae_depth": 3, "context": 1000},
    ],
)
def test_continuation_shapes(tiny: TrainConfig, changes: dict) -> None:
    cfg = tiny.replace(**changes)
    out = _run(cfg)
    assert out.fake.shape == (3, cfg.segment + cfg.crossfade)
    assert out.latent.shape == (3, cfg.latent)
    assert out.recon.shape == out.ae_in.shape == (3, cfg.context)
    assert out.fake.abs().max() <= 1.0 and torch.isfinite(out.fake).all()


def test_context_gain_mode_tracks_the_context_level(tiny: TrainConfig) -> None:
    """G emits at the context's level within max_gain_db, whatever that level is."""
    model = ContinuationModel(tiny.replace(gain_mode="context"))
    noise = torch.randn(2, tiny.noise_dim)
    for level_db in (-40.0, -10.0):
        context = torch.randn(2, tiny.context)
        context = context / context.pow(2).mean(-1, keepdim=True).sqrt() * 10 ** (level_db / 20)
        fake = model(context, noise).fake
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
    shifts = torch.Generator().manual_seed(0)
    logits, features = seg_d(x, torch.randn(5, cfg.latent), shifts)
    expected = {"single": 1, "multiscale": 3, "multiperiod": 3}[kind]
    assert len(logits) == expected and all(lg.shape[0] == 5 for lg in logits)
    assert len(features) == expected * cfg.d_depth
    seq_logits, _ = seq_d(torch.randn(5, cfg.rollout_steps * cfg.segment), None, shifts)
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


def test_phase_shuffle_draws_only_from_the_generator_it_is_given(tiny: TrainConfig) -> None:
    d, _ = build_discriminators(tiny.replace(phase_shuffle=3, d_norm="none"))  # no power step
    x, latent = torch.randn(4, tiny.segment), torch.randn(4, tiny.latent)
    state = torch.get_rng_state()
    one, _ = d(x, latent, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # torch's global RNG is not touched
    again, _ = d(x, latent, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(one, again, strict=True))
    with pytest.raises(ValueError, match="phase shuffle"):
        d(x)  # training without a generator: refused, not drawn from a hidden one
    d.eval()
    d(x)  # no shuffle outside training, no generator needed


def test_phase_shuffle_keeps_shape_and_content() -> None:
    x = torch.arange(20.0).view(1, 1, 20)
    shuffled = phase_shuffle(x, 2, torch.Generator().manual_seed(3))
    assert shuffled.shape == x.shape
    shift = int((shuffled[0, 0, 10] - x[0, 0, 10]).item())
    assert abs(shift) <= 2
    assert torch.equal(shuffled[0, 0, 3:17], x[0, 0, 3 + shift : 17 + shift])


def _two_noises(model: ContinuationModel, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    context = 0.1 * torch.randn(4, cfg.context)
    a = model(context, torch.randn(4, cfg.noise_dim)).fake
    return a, model(context, torch.randn(4, cfg.noise_dim)).fake


def test_film_noise_reaches_every_block(tiny: TrainConfig) -> None:
    """With noise_film, the noise changes the output even when the first layer ignores it."""
    torch.manual_seed(0)
    cfg = tiny.replace(noise_film=True)
    model = ContinuationModel(cfg)
    with torch.no_grad():
        model.g.fc.weight[:, cfg.latent :] = 0.0  # the seed-concatenated noise, silenced
    a, b = _two_noises(model, cfg)
    assert losses.noise_spread(a, b).mean() > 0.05
    plain_cfg = tiny.replace(noise_film=False, gain_mode="context")
    plain = ContinuationModel(plain_cfg)
    with torch.no_grad():
        plain.g.fc.weight[:, tiny.latent :] = 0.0
    a, b = _two_noises(plain, plain_cfg)
    assert torch.allclose(a, b)  # concatenation alone is trivially ignored


def test_autoencoder_reconstructs_peaks_above_one(tiny: TrainConfig) -> None:
    """A unit-RMS context has peaks far above 1; the decoder must not clip them (no tanh)."""
    torch.manual_seed(0)
    ae = ContextAutoencoder(tiny.replace(latent=64))
    t = torch.arange(tiny.context, dtype=torch.float32)
    x = torch.sin(0.05 * t) + torch.sin(0.15 * t + 1.0)  # crest factor above sqrt(2)
    x = (x / x.pow(2).mean().sqrt())[None]
    opt = torch.optim.Adam(ae.parameters(), lr=5e-3)
    for _ in range(100):
        loss = (ae(x)[1] - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    recon = ae(x)[1].detach()
    assert x.max() > 1.5 and recon.max() > 1.3  # tanh could never exceed 1
    assert (recon - x).abs().mean() < 0.2


def test_learned_level_reads_the_noise_and_passes_gradients(tiny: TrainConfig) -> None:
    """gain_mode=learned: the level differs per noise and the waveform losses reach the gain
    head; gain_mode=context applies its gain detached (only gain_loss trains it)."""
    torch.manual_seed(0)
    context = 0.1 * torch.randn(2, tiny.context)
    noise = torch.randn(2, tiny.noise_dim)
    for mode, reaches in (("learned", True), ("context", False)):
        model = ContinuationModel(tiny.replace(gain_mode=mode))
        out = model(context, noise)
        out.fake.pow(2).mean().backward()
        grad = model.g.level.head.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == reaches
    learned = ContinuationModel(tiny.replace(gain_mode="learned"))
    gains = [learned(context, torch.randn(2, tiny.noise_dim)).gain_db for _ in range(2)]
    assert not torch.allclose(gains[0], gains[1])


def test_context_noise_level_is_an_input(tiny: TrainConfig) -> None:
    torch.manual_seed(0)
    model = ContinuationModel(tiny)
    context, noise = 0.1 * torch.randn(2, tiny.context), torch.randn(2, tiny.noise_dim)
    quiet = model(context, noise).fake
    assert torch.equal(quiet, model(context, noise, noise_level=torch.zeros(2, 1)).fake)
    assert not torch.allclose(quiet, model(context, noise, noise_level=torch.ones(2, 1)).fake)


def test_augment_context_adds_noise_relative_to_the_level() -> None:
    context = 0.2 * torch.randn(3, 4000)
    level = torch.tensor([[0.0], [0.5], [1.0]])
    noisy = augment_context(context, level, torch.Generator().manual_seed(0))
    added = (noisy - context).pow(2).mean(-1).sqrt() / context.pow(2).mean(-1).sqrt()
    assert added[0] == 0.0
    assert added[1:].tolist() == pytest.approx([0.5, 1.0], rel=0.05)


LATENT = {"model_family": "latent", "ae_pretrain_steps": 2}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"segment": 50, "context": 300, "crossfade": 10},  # lengths that divide nothing
        {"segment": 16, "crossfade": 0},  # one frame a step (hop 16)
        {"ae_depth": 3, "context": 1000, "gain_mode": "free"},
        {"noise_dim": 0, "noise_film": False, "gain_mode": "context"},
    ],
)
def test_latent_family_has_the_segment_familys_interface(tiny: TrainConfig, changes: dict) -> None:
    cfg = tiny.replace(**LATENT, **changes)
    out = _run(cfg)
    assert out.fake.shape == (3, cfg.segment + cfg.crossfade)
    assert out.latent.shape == (3, cfg.latent)
    assert out.recon.shape == out.ae_in.shape == (3, cfg.context)
    assert torch.isfinite(out.fake).all() and out.fake.std() > 0


def test_frame_autoencoder_frames_end_with_the_audio(tiny: TrainConfig) -> None:
    """ceil(T / hop) frames, left-padded: the last frame covers the audio's last hop samples,
    so a continuation's frames follow the context's with no gap."""
    model = LatentModel(tiny.replace(**LATENT))
    hop = 4**tiny.ae_depth
    audio = torch.randn(2, 5 * hop + 3)
    assert model.ae.encode(audio).shape == (2, tiny.frame_latent, 6)
    changed = audio.clone()
    changed[:, -1] += 1.0
    last = model.ae.encode(changed)[..., -1] - model.ae.encode(audio)[..., -1]
    first = model.ae.encode(changed)[..., 0] - model.ae.encode(audio)[..., 0]
    assert last.abs().max() > 0 and first.abs().max() == 0


def test_latent_noise_reaches_the_output(tiny: TrainConfig) -> None:
    """FiLM and the grown frames read the noise: two noises, one context, two outputs."""
    model = LatentModel(tiny.replace(**LATENT))
    context = 0.1 * torch.randn(2, tiny.context)
    a = model(context, torch.randn(2, tiny.noise_dim)).fake
    b = model(context, torch.randn(2, tiny.noise_dim)).fake
    assert losses.noise_spread(a, b).min() > 0.01


@pytest.mark.parametrize("finetune", [True, False])
def test_latent_stage_two_freezes_the_encoder(tiny: TrainConfig, finetune: bool) -> None:
    model = LatentModel(tiny.replace(**LATENT, decoder_finetune=finetune))
    encoder = [*model.ae.down.parameters(), *model.ae.to_frames.parameters()]
    decoder = [*model.ae.from_frames.parameters(), *model.ae.up.parameters()]
    model.stage(1)
    assert all(p.requires_grad for p in encoder + decoder)
    model.stage(2)
    assert not any(p.requires_grad for p in encoder)
    assert all(p.requires_grad == finetune for p in decoder)
    assert all(p.requires_grad for p in model.g.parameters())
