"""Quality metrics on constructed signals and on the built-in synthetic music."""

from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune import features as f
from samplegan_tune import metrics as m
from samplegan_tune.errors import UserInputError
from samplegan_tune.synthetic import synthetic_songs

SR = 16000
CLIP = 2 * SR


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # These tensors are small: a second thread only contends with whatever else runs.
    torch.set_num_threads(1)


def clips_of(songs: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([a[: a.numel() // CLIP * CLIP].reshape(-1, CLIP) for _, a in songs])


@pytest.fixture(scope="module")
def music() -> torch.Tensor:
    """(30, 2 s) clips of four synthetic songs, shuffled so halves share a distribution."""
    clips = clips_of(synthetic_songs(60.0, SR, seed=21))
    return clips[torch.randperm(len(clips), generator=torch.Generator().manual_seed(0))]


@pytest.fixture(scope="module")
def reference(music: torch.Tensor) -> m.RealReference:
    return m.RealReference.from_clips(music[:20], SR)


def noise(count: int, dbfs: float = -20.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, CLIP, generator=torch.Generator().manual_seed(seed)) * 10 ** (
        dbfs / 20
    )


def test_frechet_distance_of_a_gaussian_to_itself_is_zero_and_symmetric() -> None:
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(500, 16, generator=rng) @ torch.randn(16, 16, generator=rng)
    b = torch.randn(400, 16, generator=rng) * 2 + 1
    ga, gb = f.gaussian(a), f.gaussian(b)
    assert abs(f.frechet_distance(*ga, *ga)) < 1e-6 * float(ga[1].trace())
    assert f.frechet_distance(*ga, *gb) == pytest.approx(f.frechet_distance(*gb, *ga), rel=1e-6)
    shift = torch.full((16,), 3.0, dtype=torch.float64)
    assert f.frechet_distance(ga[0], ga[1], ga[0] + shift, ga[1]) == pytest.approx(16 * 9.0)


def test_fad_inf_removes_the_small_sample_bias() -> None:
    dim = 8
    frames = torch.randn(600, dim, generator=torch.Generator().manual_seed(1))
    mean, cov = torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)
    plain = f.frechet_distance(mean, cov, *f.gaussian(frames[:150]))
    value, r2 = f.fad_inf(frames, mean, cov, f.psd_sqrt(cov))
    assert abs(value) < plain and abs(value) < 0.05 and 0.0 <= r2 <= 1.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = torch.Generator().manual_seed(2)
    x, y = torch.randn(80, 16, generator=rng), torch.randn(80, 16, generator=rng)
    shifted = torch.randn(80, 16, generator=rng) + 1.0
    same, different = f.kid(x, y), f.kid(x, shifted)
    assert abs(same) < 0.05 and different > 0.5
    assert f.kid(x, y, subset=50, subsets=5) == pytest.approx(f.kid(x, y, subset=50, subsets=5))


def test_kid_on_audio_separates_music_from_noise(
    music: torch.Tensor, reference: m.RealReference
) -> None:
    same, _ = m.evaluate_clips(music[20:], reference)
    other, _ = m.evaluate_clips(noise(10), reference)
    assert other[m.KID] > 20 * max(abs(same[m.KID]), 1.0)


def test_flatness_orders_tone_music_noise(music: torch.Tensor) -> None:
    tone = 0.1 * torch.sin(2 * math.pi * 440.0 * torch.arange(CLIP) / SR)[None]
    flat = [f.median_flatness(x, SR) for x in (tone, music[:4], noise(4))]
    assert flat[0] < flat[1] < flat[2]
    assert flat[2] == pytest.approx(0.56, abs=0.03)
    assert f.median_flatness(torch.zeros(2, CLIP), SR) == 0.0  # silent frames are left out


def test_kmeans_is_deterministic_and_finds_separated_clusters() -> None:
    rng = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2, generator=rng)).reshape(-1, 2)
    found = f.kmeans(x, 3, seed=5)
    assert torch.equal(found, f.kmeans(x, 3, seed=5))
    assert torch.cdist(centres, found).amin(1).max() < 0.2


def test_ndb_is_low_for_one_distribution_and_high_for_another() -> None:
    rng = torch.Generator().manual_seed(4)
    real = torch.softmax(torch.randn(40, 8, generator=rng), dim=1)  # (clips, bins) shares
    same = torch.softmax(torch.randn(40, 8, generator=rng), dim=1)
    other = torch.zeros(40, 8)
    other[:, 0] = 1.0
    assert f.ndb_k(same, real, 100) <= 0.25
    assert f.ndb_k(other, real, 100) >= 0.75


def test_music_scores_far_better_than_noise(
    music: torch.Tensor, reference: m.RealReference
) -> None:
    good, why = m.evaluate_clips(music[20:], reference)
    bad, _ = m.evaluate_clips(noise(10), reference)
    assert why == {} and set(good) == set(m.METRICS)
    assert all(math.isfinite(v) for v in good.values())
    assert bad[m.SCORE] > 3 * good[m.SCORE]
    for name in (m.FAD_INF, m.FD, m.NDB_K, m.FLATNESS, m.STFT_DISTANCE):
        assert bad[name] > good[name], name
    assert bad[m.DIVERSITY] < good[m.DIVERSITY]


def test_too_few_clips_makes_metrics_unavailable_with_reasons(
    music: torch.Tensor, reference: m.RealReference
) -> None:
    values, reasons = m.evaluate_clips(music[20:21], reference)
    for name in (m.KID, m.DIVERSITY, m.NDB_K, m.FAD_INF, m.FAD_INF_R2):
        assert values[name] is None and reasons[name]
    assert values[m.SCORE] is not None and "partial" in reasons[m.SCORE]
    assert all(v is None or math.isfinite(v) for v in values.values())


def test_non_finite_generated_audio_gives_finite_metrics(reference: m.RealReference) -> None:
    bad = noise(4)
    bad[0, :100], bad[1, 5], bad[2] = float("nan"), float("inf"), 1e30
    values, _ = m.evaluate_clips(bad, reference)
    assert all(v is None or math.isfinite(v) for v in values.values())


def test_reference_round_trip_and_cache(
    tmp_path, music: torch.Tensor, reference: m.RealReference
) -> None:
    reference.save(tmp_path / "ref.pt")
    loaded = m.RealReference.load(tmp_path / "ref.pt")
    assert m.evaluate_clips(music[20:], loaded) == m.evaluate_clips(music[20:], reference)
    with pytest.raises(ValueError, match="logmel"):
        m.RealReference.load(tmp_path / "ref.pt", f.LogMelEmbedding(SR, n_mels=32))
    first = m.reference_for(music[:20], SR, tmp_path / "cache", "synthetic/held-out")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and "synthetic-held-out" in files[0].name
    again = m.reference_for(music[:20], SR, tmp_path / "cache", "synthetic/held-out")
    assert torch.equal(again.frame_cov, first.frame_cov)
    m.reference_for(music[:19], SR, tmp_path / "cache", "synthetic/held-out")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # other clips, other file
    files[0].write_bytes(b"garbage")
    assert m.reference_for(music[:20], SR, tmp_path / "cache", "synthetic/held-out").num_clips == 20


class _TinyEmbedding(torch.nn.Module):
    """(B, T) -> (B, 6): log energy in six bands of a fixed random projection."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Conv1d(1, 6, 64, stride=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.proj(x[:, None]).pow(2).mean(-1) + 1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_embedding_file_works(tmp_path, music: torch.Tensor) -> None:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.script(_TinyEmbedding()).save(str(path))
    embedding = f.TorchScriptEmbedding(path)
    frames, clips = embedding.embed(music[:3])
    assert frames.shape == (3, 1, 6) and clips.shape == (3, 6)
    reference = m.RealReference.from_clips(music[:20], SR, embedding)
    good, reasons = m.evaluate_clips(music[20:], reference)
    bad, _ = m.evaluate_clips(noise(10), reference)
    assert good[m.KID] is not None and good[m.FD] is not None
    assert reasons[m.NDB_K] and reasons[m.FAD_INF]  # one frame per clip: too few frames
    assert bad[m.SCORE] > good[m.SCORE]


def test_bad_embedding_files_name_the_file(tmp_path) -> None:
    with pytest.raises(UserInputError, match="missing.pt"):
        f.TorchScriptEmbedding(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserInputError, match="junk.pt"):
        f.TorchScriptEmbedding(junk)
