"""musicnn in PyTorch against musicnn's own TensorFlow outputs (tests/data/musicnn_reference.npz).

The reference was recorded by benchmarks/musicnn_reference.py with tensorflow-cpu 2.15.1 running
musicnn's own graph on the wheel's checkpoints; the signals are rebuilt here by the same
formulas. Tolerances (measured on CPU: log-mel 2.4e-5, embedding 1.6e-5 ~ 5e-6 of its scale,
tags 3.4e-6):
  * log-mel input: max abs error <= 1e-3 (values up to ~7);
  * 200-d embedding: max abs error <= 1e-3 * max |reference|;
  * tag probabilities: max abs error <= 1e-4.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.judge.musicnn import MusicEmbedding, checkpoint_prefix
from samplegan_tune.judge.tfbundle import read_tensor_bundle

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
MODELS = ("MSD_musicnn", "MTT_musicnn")
SR = 16000


def signals() -> dict[str, np.ndarray]:
    """The reference's 6-s signals, (96000,) float32 each (same formulas as the recorder)."""
    t = np.arange(6 * SR) / SR
    chord = sum(
        sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) for f in (220.0, 277.18, 329.63)
    )
    chord = 0.1 * chord * np.exp(-3.0 * (t % 0.5))
    noise = 0.1 * np.random.default_rng(0).standard_normal(t.size)
    since_click = t % 0.25
    clicks = 0.5 * np.exp(-since_click / 0.002) * np.sin(2 * np.pi * 1000.0 * since_click)
    loud = np.clip(3.0 * np.sin(2 * np.pi * 110.0 * t), -1.0, 1.0)
    named = {"chord": chord, "noise": noise, "clicks": clicks, "loud": loud}
    return {name: x.astype(np.float32) for name, x in named.items()}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def audio(reference: dict[str, np.ndarray]) -> torch.Tensor:
    named = signals()
    assert list(named) == list(reference["signals"])
    return torch.from_numpy(np.stack(list(named.values())))  # (4, 96000)


@pytest.fixture(scope="module", params=MODELS)
def model(request: pytest.FixtureRequest) -> MusicEmbedding:
    # No skip without the package: `make setup` installs it, and its absence must fail CI.
    return MusicEmbedding.load(request.param)


def assert_parity(net: MusicEmbedding, audio: torch.Tensor, ref: dict[str, np.ndarray]) -> None:
    out = net(audio)
    want_emb, want_tags = ref[f"{net.model}/embedding"], ref[f"{net.model}/tag_probs"]
    assert out.embedding.shape == want_emb.shape == (4, 3, 200)
    assert out.tag_probs.shape == want_tags.shape == (4, 3, 50)
    emb_err = np.abs(out.embedding.cpu().numpy() - want_emb).max()
    assert emb_err <= 1e-3 * np.abs(want_emb).max()
    assert np.abs(out.tag_probs.cpu().numpy() - want_tags).max() <= 1e-4


def test_log_mel_matches_librosa(model: MusicEmbedding, audio, reference) -> None:
    logmel = model.logmel(audio).numpy()  # (4, 376, 96)
    assert logmel.shape == (4, 376, 96)
    picked = logmel[:, reference["logmel_frame_index"]]
    assert np.abs(picked - reference["logmel_frames"]).max() <= 1e-3


def test_matches_tensorflow(model: MusicEmbedding, audio, reference) -> None:
    assert model.tag_names[:2] in (("rock", "pop"), ("guitar", "classical"))
    assert len(model.tag_names) == 50
    assert_parity(model, audio, reference)


def test_finite_where_float16_overflowed(model: MusicEmbedding, audio, reference) -> None:
    loud = list(reference["signals"]).index("loud")
    assert reference["float16_overflow"][loud]  # musicnn's own front end gave inf here
    emb = model.embed(audio[loud : loud + 1])
    assert torch.isfinite(emb).all()
    assert torch.isfinite(model.embed(torch.ones(1, 3 * SR))).all()  # DC at full scale


def test_tells_a_chord_from_noise(model: MusicEmbedding, audio) -> None:
    out = model(audio[:2])  # chord, noise
    emb = torch.nn.functional.normalize(out.embedding, dim=-1)  # (2, 3, 200)
    same = (emb[:, 0] * emb[:, 1]).sum(-1)  # two patches of the same signal
    across = (emb[0] * emb[1]).sum(-1)
    assert same.min() > 0.9 and across.max() < 0.5
    assert (out.tag_probs[0] - out.tag_probs[1]).abs().mean(0).max() > 0.2


def test_patch_count_hop_and_batch_independence(model: MusicEmbedding) -> None:
    clip = torch.from_numpy(signals()["chord"]).repeat(2)[None, : 8 * SR]  # (1, 8 s)
    assert model.embed(clip).shape == (1, 4, 200)  # 1 + (501 - 187) // 94
    assert model.tags(clip, hop_seconds=3.0).shape == (1, 2, 50)
    batch = torch.cat([clip, 0.5 * clip])
    torch.testing.assert_close(model.embed(batch)[:1], model.embed(clip), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="47616"):
        model.embed(clip[:, : 2 * SR])


def test_reads_the_checkpoint() -> None:
    tensors = read_tensor_bundle(checkpoint_prefix("MSD_musicnn"))
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)  # 7 frames x 38 mel bands
    assert tensors["dense/kernel"].shape == (1506, 200)
    assert tensors["conv2d/kernel/Adam"].shape == (7, 38, 1, 204)  # optimizer slots come too
    assert tensors["batch_normalization_10/moving_variance"].min() > 0


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a)
    )
    with pytest.raises(UserInputError) as caught:
        MusicEmbedding.load("MSD_musicnn")
    message = str(caught.value)
    assert "pip install --no-deps musicnn==0.1.0" in message and "\n" not in message


def test_unknown_model_is_refused() -> None:
    with pytest.raises(UserInputError, match="MSD_musicnn, MTT_musicnn"):
        MusicEmbedding.load("MSD_vgg")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_tensorflow(audio, reference) -> None:
    for name in MODELS:
        net = MusicEmbedding.load(name, device="cuda")
        out = net(audio)
        assert out.embedding.device.type == "cuda" and out.embedding.dtype == torch.float32
        assert_parity(net, audio, reference)


def test_stays_frozen_in_eval_mode(model: MusicEmbedding, audio) -> None:
    before = model.embed(audio[:1])
    torch.nn.Sequential(model).train()  # as a parent module's .train() would
    assert not model.training and not model.net.bn_pool.training
    assert not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model.embed(audio[:1]), before, rtol=0, atol=0)
