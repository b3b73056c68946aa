"""The CUDA path: training in bf16 and fp32, resuming, generation and the `train` /
`generate` commands on a GPU. Skipped without CUDA; `benchmarks/gpu_check.sh` runs them on a
lent GPU machine. Imports nothing of Ray, so they run where only torch is installed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch

from samplegan_tune.audio.corpus import Corpus, synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.train.rollout import rollout
from samplegan_tune.train.trainer import Trainer
from tests.conftest import TINY

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_items(synthetic_songs(seconds=24.0, sample_rate=8000, seed=1), 8000)


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matmuls in full fp32 (not TF32), as on the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _trainer(corpus: Corpus, **changes) -> Trainer:
    cfg = TrainConfig.from_dict({**TINY, "sample_rate": 8000, **changes})
    return Trainer(cfg, corpus, device="cuda")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("family", ["segment", "latent"])
def test_training_on_cuda_is_finite_and_stays_on_the_gpu(corpus, precision, family) -> None:
    trainer = _trainer(corpus, precision=precision, model_family=family, ae_pretrain_steps=2)
    for _ in range(6):  # through stage 1, D warm-up and adversarial steps
        metrics = trainer.step()
    assert "loss/d" in metrics and all(math.isfinite(v) for v in metrics.values())
    params = [*trainer.model.parameters(), *trainer.d.parameters()]
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in params)


def test_fused_step_matches_plain_step_on_cuda(corpus, exact_fp32) -> None:
    """As tests/test_trainer.py's CPU test: one step from the same state, no phase shuffle."""
    changes = {"precision": "fp32", "d_warmup_steps": 0, "phase_shuffle": 0}
    plain = _trainer(corpus, fused_step=False, **changes)
    fused = _trainer(corpus, fused_step=True, **changes)
    a, b = plain.step(), fused.step()
    for key in ("loss/d", "loss/g_total", "loss/fm", "loss/recon_stft", "grad/g_norm"):
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), key


def test_resume_on_cuda_continues_exactly(corpus) -> None:
    first = _trainer(corpus, d_warmup_steps=1)
    for _ in range(2):
        first.step()
    second = _trainer(corpus, d_warmup_steps=1)
    second.load_state_dict(first.state_dict())
    # cuDNN's backward kernels sum in no fixed order, and bf16 keeps 8 bits: the first D
    # update differs by rounding (seen: 6e-5 relative on an H200), so equal to 1e-3
    assert first.step()["loss/g_total"] == pytest.approx(second.step()["loss/g_total"], rel=1e-3)


def test_rollout_on_cuda_matches_cpu(corpus, exact_fp32) -> None:
    trainer = _trainer(corpus, precision="fp32")
    model = trainer.model.eval()
    primers = trainer.eval_sampler.fixed_windows(2, trainer.cfg.context, seed=3)
    on_gpu = rollout(model, primers, 600, seed=0).cpu()
    on_cpu = rollout(model.cpu(), primers.cpu(), 600, seed=0)
    assert on_gpu.shape == (2, 600)
    assert torch.allclose(on_gpu, on_cpu, atol=1e-3)


def test_train_and_generate_commands_on_cuda(tmp_path: Path) -> None:
    song = torch.cat([s for _, s in synthetic_songs(seconds=12.0, sample_rate=8000, seed=2)])
    soundfile.write(tmp_path / "song.wav", song.numpy(), 8000)
    config = tmp_path / "tiny.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in {**TINY, "sample_rate": 8000}.items()))
    run = [sys.executable, "-m", "samplegan_tune.cli"]
    env_args = {"capture_output": True, "text": True, "timeout": 300}
    out = tmp_path / "run"
    done = subprocess.run(
        [
            *run,
            "train",
            "--data",
            str(tmp_path / "song.wav"),
            "--config",
            str(config),
            "--steps",
            "6",
            "--out",
            str(out),
            "--device",
            "cuda",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        **env_args,
    )
    assert done.returncode == 0, done.stderr
    wav = tmp_path / "out.wav"
    done = subprocess.run(
        [*run, "generate", str(out), "--seconds", "1", "--device", "cuda", "--out", str(wav)],
        **env_args,
    )
    assert done.returncode == 0, done.stderr
    audio, rate = soundfile.read(wav)
    assert rate == 8000 and len(audio) == 8000 and abs(audio).max() > 0
