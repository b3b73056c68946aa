from __future__ import annotations

import math
import weakref

import pytest
import torch

from samplegan_tune.audio.corpus import Corpus, synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.checkpoint import load_checkpoint, save_checkpoint
from samplegan_tune.train.trainer import Trainer


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


def test_training_leaves_torchs_global_rng_alone(tiny: TrainConfig, corpus: Corpus) -> None:
    """Weights are seeded and every draw (batches, noise, phase shuffle, GP) comes from the
    trainer's own generators: the caller's global RNG is the same after as before."""
    state = torch.get_rng_state()
    trainer = Trainer(tiny.replace(d_warmup_steps=0, adv_loss="wgan-gp", phase_shuffle=2), corpus)
    trainer.step()
    assert torch.equal(torch.get_rng_state(), state)
    again = Trainer(tiny, corpus)  # the same seed, the same weights, whatever ran before
    torch.manual_seed(12345)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            Trainer(tiny, corpus).model.parameters(), again.model.parameters(), strict=True
        )
    )


def test_evaluate_is_repeatable_and_leaves_training_rng_alone(
    tiny: TrainConfig, corpus: Corpus
) -> None:
    trainer = Trainer(tiny, corpus)
    state = trainer.rng.get_state()
    first, second = trainer.evaluate(count=8), trainer.evaluate(count=8)
    assert first == second
    assert torch.equal(trainer.rng.get_state(), state)
    assert {"eval/recon_l1", "eval/loudness_gap_db", "eval/d_acc_real"} <= set(first)


NEW_KNOBS = {
    "gain_mode": "learned",
    "level_tolerance_db": 3.0,
    "noise_film": True,
    "lambda_ms": 1.0,
    "ctx_noise_max": 0.3,
    "ctx_noise_gen": 0.1,
    "d_context_tail": 32,
    "rollout_steps": 4,
    "tbptt": 2,
}


@pytest.mark.parametrize(
    "changes",
    [NEW_KNOBS, {**NEW_KNOBS, "adv_loss": "wgan-gp", "tbptt": 3, "seed_source": "reconstruction"}],
)
def test_new_knobs_train_and_report(tiny: TrainConfig, corpus: Corpus, changes: dict) -> None:
    trainer = Trainer(tiny.replace(**changes), corpus)
    history = _losses(trainer, 4)
    assert all(math.isfinite(v) for m in history for v in m.values())
    assert {"loss/ms", "g/noise_spread", "loss/seq_adv", "loss/d"} <= set(history[-1])
    assert math.isfinite(trainer.evaluate(count=4)["eval/recon_l1"])


def test_context_noise_changes_the_context_only_in_training(
    tiny: TrainConfig, corpus: Corpus
) -> None:
    """Evaluation reads the clean context (ctx_noise_gen=0): the same as a model never
    augmented; training steps see noisy contexts and so differ."""
    tiny = tiny.replace(ctx_noise_max=0.0, ctx_noise_gen=0.0)
    plain, noisy = Trainer(tiny, corpus), Trainer(tiny.replace(ctx_noise_max=0.5), corpus)
    assert plain.evaluate(count=4) == noisy.evaluate(count=4)
    noisy.model.train()
    level = noisy.unroller._context_noise_level(64)
    assert level is not None and 0.0 <= float(level.min()) < float(level.max()) <= 0.5
    noisy.model.eval()
    assert noisy.unroller._context_noise_level(64) is None
    assert _losses(plain, 1) != _losses(noisy, 1)


def test_discriminator_with_context_tail_sees_the_joint_input(
    tiny: TrainConfig, corpus: Corpus
) -> None:
    trainer = Trainer(tiny.replace(d_context_tail=48, phase_shuffle=0), corpus)
    u = trainer.unroll(trainer.sample_windows(2), free_prob=0.0)
    assert u.real_tail.shape == (2, tiny.rollout_steps, 48)
    # teacher-forced: G saw the real context, so both verdicts share the real tail
    assert torch.equal(u.fake_tail, u.real_tail)
    windows = trainer.sample_windows(2)
    step1 = tiny.context + tiny.segment
    assert torch.equal(
        trainer.unroller.targets(windows, 1, 2)[2][:, 0], windows[:, step1 - 48 : step1]
    )
    joint = trainer._joint(u.real, u.real_tail)
    assert joint.shape == (2 * tiny.rollout_steps, 48 + tiny.segment + tiny.crossfade)
    a, _ = trainer._judge(u.real, u.latent, u.real_tail)
    b, _ = trainer._judge(u.real, u.latent, torch.randn_like(u.real_tail))
    assert not torch.allclose(a[0], b[0])  # the verdict depends on the tail


def _peak_saved_bytes(trainer: Trainer) -> int:
    """Peak bytes autograd holds for backward during one G step."""
    alive, peak = [0], [0]

    class Box:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    def pack(t: torch.Tensor) -> Box:
        box, size = Box(t), t.numel() * t.element_size()
        alive[0] += size
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(box, lambda: alive.__setitem__(0, alive[0] - size))
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.t):
        trainer.step()
    return peak[0]


def test_tbptt_bounds_memory_and_carries_gradient_through_feedback(
    tiny: TrainConfig, corpus: Corpus
) -> None:
    cfg = tiny.replace(rollout_steps=8, d_warmup_steps=100, scheduled_sampling=1.0, tbptt=0)
    whole = _peak_saved_bytes(Trainer(cfg, corpus))
    chunked = _peak_saved_bytes(Trainer(cfg.replace(tbptt=2), corpus))
    assert chunked < 0.5 * whole
    # within a chunk step 1's output depends (through its context) on step 0's generator
    trainer = Trainer(cfg.replace(tbptt=2), corpus)
    windows = trainer.sample_windows(2)
    grads = []
    for keep in (False, True):
        state = trainer.unroller.start(windows, free_prob=1.0)
        u = trainer.unroller.advance(windows, state, 0, 2, keep_graph=keep)
        trainer.model.zero_grad()
        u.fake[:, 1].pow(2).sum().backward()
        grads.append(trainer.model.g.out.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


LATENT = {"model_family": "latent", "ae_pretrain_steps": 3}


def test_latent_family_trains_in_two_stages(tiny: TrainConfig, corpus: Corpus) -> None:
    """Stage 1 trains the frame autoencoder alone; stage 2 trains G (and the decoder) while
    the encoder, the space G works in, stays exactly as stage 1 left it."""
    trainer = Trainer(tiny.replace(**LATENT), corpus)
    history = _losses(trainer, 3)
    assert all(set(m) == {"loss/ae", "grad/ae_norm"} for m in history)
    encoder = [p.detach().clone() for p in trainer.model.ae.down.parameters()]
    decoder = [p.detach().clone() for p in trainer.model.ae.up.parameters()]
    generator = [p.detach().clone() for p in trainer.model.g.parameters()]
    history = _losses(trainer, 4)
    assert {"loss/d", "loss/adv", "loss/ms", "loss/recon_stft"} <= set(history[-1])
    assert all(math.isfinite(v) for m in history for v in m.values())

    def moved(before: list, now) -> bool:
        return any(not torch.equal(a, b) for a, b in zip(before, now, strict=True))

    assert not moved(encoder, trainer.model.ae.down.parameters())
    assert moved(decoder, trainer.model.ae.up.parameters())
    assert moved(generator, trainer.model.g.parameters())


def test_latent_autoencoder_learns_to_reconstruct(tiny: TrainConfig, corpus: Corpus) -> None:
    cfg = tiny.replace(model_family="latent", ae_pretrain_steps=1000, lr_ae=1e-3, batch_size=8)
    trainer = Trainer(cfg, corpus)
    before = trainer.evaluate(count=16)["eval/ae"]
    _losses(trainer, 80)
    assert trainer.evaluate(count=16)["eval/ae"] < 0.8 * before


def test_latent_resume_continues_exactly(tiny: TrainConfig, corpus: Corpus, tmp_path) -> None:
    cfg = tiny.replace(**LATENT)
    expected = _losses(Trainer(cfg, corpus), 6)[4:]
    first = Trainer(cfg, corpus)
    _losses(first, 4)  # past the stage switch: the resumed run must freeze the encoder too
    path = save_checkpoint(tmp_path / "ck.pt", first.state_dict())
    resumed = Trainer(cfg, corpus)
    resumed.load_state_dict(load_checkpoint(path))
    assert _losses(resumed, 2) == expected


@pytest.mark.parametrize(
    ("family", "d_norm", "tol"),
    [
        ("segment", "weight", 1e-4),
        ("latent", "weight", 1e-4),
        ("segment", "spectral", 1e-2),
        ("latent", "spectral", 1e-2),
    ],
)
def test_fused_step_computes_the_plain_steps_losses_and_gradients(
    tiny: TrainConfig, corpus: Corpus, family: str, d_norm: str, tol: float
) -> None:
    """`fused_step` (batched D calls, D frozen while G trains, no unread decoder passes) does
    the plain step's math: losses, metrics and G's gradients equal to float rounding (1e-4
    relative). With spectral norm, `tol` 1e-2: a batched D call makes one power iteration
    for both halves where the plain step makes one per call, so sigma moves a little less
    (seen: 0.3 % on D's gradient norm). Phase shuffle off: one batched call draws one shift
    for both halves, two calls draw two."""
    changes = {"d_warmup_steps": 0, "phase_shuffle": 0, "model_family": family, "d_norm": d_norm}
    if family == "latent":
        changes["ae_pretrain_steps"] = 1
    trainers = [
        Trainer(tiny.replace(**changes, fused_step=fused), corpus) for fused in (False, True)
    ]
    for _ in range(2 if family == "latent" else 1):  # latent: stage 1, then one G/D step
        plain, fused = (t.step() for t in trainers)
    assert plain.keys() == fused.keys()
    for key in plain:
        # D's accuracies and separation count segments (pairs): where sigma moves a little,
        # one of 192 pairs may flip (0.5 %), so they get `tol` as an absolute slack too.
        slack = 2 * tol if key.startswith("d/") else 1e-6
        if not key.startswith("time/"):
            assert fused[key] == pytest.approx(plain[key], rel=tol, abs=slack), key
    grads = [[p.grad for p in t.model.g.parameters() if p.grad is not None] for t in trainers]
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max()))
