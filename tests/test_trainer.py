from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune.checkpoint import load_checkpoint, save_checkpoint
from samplegan_tune.config import TrainConfig
from samplegan_tune.data import Corpus, synthetic_songs
from samplegan_tune.trainer import Trainer


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    songs = synthetic_songs(seconds=24.0, sample_rate=8000, seed=1)
    audio = torch.cat([song for _, song in songs])
    lengths = torch.tensor([len(song) for _, song in songs])
    starts = torch.cumsum(lengths, 0) - lengths
    return Corpus(audio, starts, lengths, tuple(n for n, _ in songs), 8000)


def _losses(trainer: Trainer, steps: int) -> list[dict[str, float]]:
    out = []
    for _ in range(steps):
        metrics = trainer.step()
        out.append({k: v for k, v in metrics.items() if not k.startswith("time/")})
    return out


def test_step_reports_namespaced_finite_metrics(tiny: TrainConfig, corpus: Corpus) -> None:
    trainer = Trainer(tiny, corpus)
    history = _losses(trainer, 4)  # d_warmup_steps=2: steps 3-4 are adversarial
    assert "loss/d" not in history[0] and "loss/recon_l1" in history[0]
    late = history[-1]
    for key in ("loss/d", "loss/adv", "loss/fm", "loss/seq_adv", "d/acc_real", "grad/g_norm"):
        assert key in late
    assert all(math.isfinite(v) for m in history for v in m.values())
    assert all("/" in k for m in history for k in m)


@pytest.mark.parametrize(
    "changes",
    [
        {"adv_loss": "ns"},
        {"adv_loss": "lsgan", "n_critic": 2},
        {"adv_loss": "wgan-gp", "d_kind": "multiperiod"},
        {"ae_pretrain_steps": 2, "seed_source": "reconstruction", "d_kind": "single"},
        {"gain_mode": "free", "rollout_steps": 1, "grad_clip": 0.0},
    ],
)
def test_every_variant_trains(tiny: TrainConfig, corpus: Corpus, changes: dict) -> None:
    trainer = Trainer(tiny.replace(**changes), corpus)
    history = _losses(trainer, 5)
    assert all(math.isfinite(v) for m in history for v in m.values())
    if changes.get("adv_loss") == "wgan-gp":
        assert "loss/d_gp" in history[-1]
    if changes.get("ae_pretrain_steps"):
        assert set(history[0]) == {"loss/ae", "grad/ae_norm"}


def test_short_training_lowers_reconstruction_loss(tiny: TrainConfig, corpus: Corpus) -> None:
    cfg = tiny.replace(d_warmup_steps=1000, lr_g=1e-3, lr_ae=1e-3, batch_size=8)
    trainer = Trainer(cfg, corpus)
    before = trainer.evaluate(count=16)
    _losses(trainer, 80)
    after = trainer.evaluate(count=16)
    assert after["eval/recon_stft"] < 0.8 * before["eval/recon_stft"]
    assert after["eval/ae"] < 0.8 * before["eval/ae"]


def test_same_seed_same_losses_on_cpu(tiny: TrainConfig, corpus: Corpus) -> None:
    a = _losses(Trainer(tiny, corpus), 4)
    b = _losses(Trainer(tiny, corpus), 4)
    assert a == b
    c = _losses(Trainer(tiny.replace(seed=1), corpus), 4)
    assert a != c


def test_resume_continues_exactly(tiny: TrainConfig, corpus: Corpus, tmp_path) -> None:
    straight = Trainer(tiny, corpus)
    expected = _losses(straight, 6)[3:]
    first = Trainer(tiny, corpus)
    _losses(first, 3)
    path = save_checkpoint(tmp_path / "ck.pt", first.state_dict())
    torch.manual_seed(999)  # unrelated RNG use between runs must not matter
    resumed = Trainer(tiny, corpus)
    resumed.load_state_dict(load_checkpoint(path))
    assert resumed.step_count == 3
    assert _losses(resumed, 3) == expected


def test_evaluate_is_repeatable_and_leaves_training_rng_alone(
    tiny: TrainConfig, corpus: Corpus
) -> None:
    trainer = Trainer(tiny, corpus)
    state = trainer.rng.get_state()
    first, second = trainer.evaluate(count=8), trainer.evaluate(count=8)
    assert first == second
    assert torch.equal(trainer.rng.get_state(), state)
    assert {"eval/recon_l1", "eval/loudness_gap_db", "eval/d_acc_real"} <= set(first)
