"""Collapse detectors: each fires on its own failure and never on real music."""

from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune.audio.corpus import Corpus
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.judge import collapse as c
from samplegan_tune.judge.metrics import NOISE_SPREAD, RealReference
from samplegan_tune.models import ContinuationModel, build_discriminators
from samplegan_tune.train import losses
from samplegan_tune.train.trainer import Trainer
from samplegan_tune.tuning.trial import score_model
from tests.conftest import TINY

SR = 16000
CLIP = 2 * SR
HEALTHY = {
    "loss/d": 1.9,
    "loss/g_total": 3.2,
    "grad/g_norm": 12.0,
    "grad/d_norm": 0.4,
    "d/acc_real": 0.7,
    "d/acc_fake": 0.6,
    "d/separation": 0.7,
    "time/step_s": 0.1,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small tensors: a second thread only contends


def clips_of(songs: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([a[: a.numel() // CLIP * CLIP].reshape(-1, CLIP) for _, a in songs])


@pytest.fixture(scope="module")
def songs() -> list[tuple[str, torch.Tensor]]:
    return synthetic_songs(120.0, SR, seed=33)


@pytest.fixture(scope="module")
def reference(songs: list[tuple[str, torch.Tensor]]) -> RealReference:
    return RealReference.from_clips(clips_of(songs[:2]), SR)


@pytest.fixture(scope="module")
def held_out(songs: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    return clips_of(songs[2:])[:12]


def failures(real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reason -> a set of 12 clips that should be stopped with that reason."""
    rng = torch.Generator().manual_seed(0)
    white = torch.randn(len(real), CLIP, generator=rng)
    frozen = real.clone()
    frozen[:, 3200:] = frozen[:, 3199:3200]  # 0.2 s of music, then the last value held
    return {
        c.SILENCE: white * 1e-4,  # −80 dBFS
        c.STATIC: white * 0.1,
        c.STAGNANT: frozen,
        c.MODE_COLLAPSE: real[:1].repeat(len(real), 1),
    }


def test_each_rollout_detector_fires_first_on_its_own_failure(
    reference: RealReference, held_out: torch.Tensor
) -> None:
    for reason, clips in failures(held_out).items():
        assert c.CollapseMonitor().check_rollouts(clips, reference)[:1] == [reason], reason
    dc = torch.full((4, CLIP), 0.1)
    assert c.CollapseMonitor().check_rollouts(dc, reference)[:1] == [c.STAGNANT]


def test_no_rollout_detector_fires_on_real_music(
    songs: list[tuple[str, torch.Tensor]], reference: RealReference, held_out: torch.Tensor
) -> None:
    assert c.rollout_reasons(held_out, reference) == []
    for name, audio in songs[2:]:  # each unseen song on its own
        assert c.rollout_reasons(clips_of([(name, audio)]), reference) == [], name
    quieter = held_out * 10 ** (-12 / 20)  # real music 12 dB quieter is still music
    assert c.rollout_reasons(quieter, reference) == []
    other = clips_of(synthetic_songs(30.0, SR, seed=77))  # another corpus entirely
    assert c.rollout_reasons(other, reference) == []


def test_training_detectors_on_metric_dicts() -> None:
    monitor = c.CollapseMonitor(c.CollapseConfig(d_patience=3, grad_patience=2))
    assert monitor.check_training(HEALTHY) is None
    assert monitor.check_training({**HEALTHY, "loss/d": math.nan}) == c.NON_FINITE
    assert monitor.check_training({**HEALTHY, "loss/g_total": math.inf}) == c.NON_FINITE
    won = {**HEALTHY, "d/separation": 0.995}
    assert [monitor.check_training(won) for _ in range(2)] == [None, None]
    assert monitor.check_training(HEALTHY) is None  # a lost check resets the run
    assert [monitor.check_training(won) for _ in range(3)] == [None, None, c.D_OVERPOWERED]
    # the sign statistic no longer decides: an lsgan D at its 1/0 targets has acc_fake 0
    assert monitor.check_training({**HEALTHY, "d/acc_fake": 0.0, "d/acc_real": 1.0}) is None
    steep = {**HEALTHY, "grad/d_norm": 1e7}
    assert [monitor.check_training(steep) for _ in range(2)] == [None, c.EXPLODING_GRADIENTS]
    fresh = c.CollapseMonitor(c.CollapseConfig(grad_patience=1))
    assert fresh.check_training({**HEALTHY, "grad/g_norm": math.nan}) == c.EXPLODING_GRADIENTS


def test_non_finite_weights_are_found() -> None:
    model = torch.nn.Linear(3, 2)
    monitor = c.CollapseMonitor()
    assert monitor.check_training(HEALTHY, model) is None
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    assert monitor.check_training(HEALTHY, model) == c.NON_FINITE


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="patience"):
        c.CollapseConfig(d_patience=0)
    with pytest.raises(ValueError, match="stagnant_share"):
        c.CollapseConfig(stagnant_share=0.0)


def run(corpus: Corpus, lr: float, steps: int) -> tuple[str | None, int]:
    """Train the tiny model at learning rate `lr`, checking every step: (reason, step)."""
    trainer = Trainer(TrainConfig.from_dict({**TINY, "lr_g": lr, "lr_d": lr, "lr_ae": lr}), corpus)
    monitor = c.CollapseMonitor()
    while trainer.step_count < steps:
        reason = monitor.check_training(trainer.step(), trainer.model)
        if reason:
            return reason, trainer.step_count
    return None, trainer.step_count


def test_a_diverging_training_run_is_flagged_within_a_few_checks(
    songs: list[tuple[str, torch.Tensor]],
) -> None:
    corpus = Corpus.from_items(songs[:1], SR)
    reason, step = run(corpus, 1000.0, 30)
    assert reason == c.NON_FINITE and step <= 5
    # At lr 10 this trainer's losses reach ~1e9 without NaN: the gradients explode.
    reason, step = run(corpus, 10.0, 30)
    assert reason in (c.NON_FINITE, c.D_OVERPOWERED, c.EXPLODING_GRADIENTS) and step <= 8
    assert run(corpus, 2e-4, 20) == (None, 20)


def test_every_loop_is_flagged_looping_and_real_music_is_not(
    songs: list[tuple[str, torch.Tensor]], reference: RealReference
) -> None:
    points = [(audio, s * SR) for _, audio in songs[2:] for s in (3, 9, 15, 21)]
    primers = torch.stack([audio[s - SR : s] for audio, s in points])  # (8, 1 s)
    real = torch.stack([audio[s : s + CLIP] for audio, s in points])
    assert c.rollout_reasons(real, reference) == []
    for period in (500, 512, 1237, 4096, 16000):  # 1237: no multiple of a hop or a segment
        looped = primers[:, -period:].repeat(1, CLIP // period + 1)[:, :CLIP]
        assert c.LOOPING in c.rollout_reasons(looped, reference), period
    t = torch.arange(CLIP) / SR
    drone = sum(torch.sin(2 * torch.pi * hz * t) for hz in (220.0, 277.2, 329.6)) * 0.03
    assert c.LOOPING in c.rollout_reasons(drone.repeat(4, 1), reference)  # a frozen spectrum


def test_a_model_that_ignores_its_noise_is_flagged(
    songs: list[tuple[str, torch.Tensor]], reference: RealReference
) -> None:
    heldout = Corpus.from_items(songs[2:], SR)
    deaf = ContinuationModel(TrainConfig.from_dict({**TINY, "noise_dim": 0}))
    values, _, clips = score_model(deaf, heldout, reference, rollouts=4, seconds=1.0)
    assert values[NOISE_SPREAD] < 1e-4  # not bit-identical: batches of 4 and 1 round apart
    spread = values[NOISE_SPREAD]
    assert c.NOISE_IGNORED in c.rollout_reasons(clips, reference, noise_spread=spread)
    assert c.NOISE_IGNORED not in c.rollout_reasons(clips, reference)  # not measured: silent
    hearing = ContinuationModel(TrainConfig.from_dict({**TINY, "noise_dim": 4}))
    values, _, _ = score_model(hearing, heldout, reference, rollouts=4, seconds=1.0)
    assert values[NOISE_SPREAD] > 0.0


@pytest.mark.parametrize("kind", ["ns", "hinge", "lsgan", "wgan-gp"])
def test_d_overpowered_fires_on_a_saturated_d_for_every_loss(
    kind: str, songs: list[tuple[str, torch.Tensor]]
) -> None:
    """A real D trained with `kind` to tell music from white noise saturates; at init, judging
    real against real, it is balanced. (lsgan's fake target is 0: the sign misjudges it.)"""
    torch.manual_seed(0)
    cfg = TrainConfig.from_dict(
        {
            **TINY,
            "adv_loss": kind,
            "d_context": False,
            "d_channels": 16,
            "d_norm": "none",
            "d_kind": "single",
        }
    )
    d, shifts = build_discriminators(cfg)[0], torch.Generator().manual_seed(0)
    audio = songs[0][1]
    starts = torch.randint(len(audio) - 256, (2, 32), generator=torch.Generator().manual_seed(1))
    real, other = (audio[s[:, None] + torch.arange(256)] for s in starts)  # (32, 256) each
    fake = 0.1 * torch.randn(32, 256)  # white noise at the music's level
    balanced = losses.d_separation(d(real, None, shifts)[0], d(other, None, shifts)[0])
    assert 0.3 < balanced < 0.7
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    for _ in range(40):
        loss = losses.d_loss(kind, d(real, None, shifts)[0], d(fake, None, shifts)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    real_logits, fake_logits = d(real, None, shifts)[0], d(fake, None, shifts)[0]
    saturated = {"d/separation": losses.d_separation(real_logits, fake_logits)}
    monitor = c.CollapseMonitor(c.CollapseConfig(d_patience=2))
    assert [monitor.check_training(saturated) for _ in range(2)] == [None, c.D_OVERPOWERED]
    calm = {"d/separation": balanced}
    assert [monitor.check_training(calm) for _ in range(3)] == [None] * 3
    if kind == "lsgan":
        assert min(losses.d_accuracy(real_logits, fake_logits)) < 0.99
