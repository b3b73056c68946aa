"""Quality metrics on constructed signals and on the built-in synthetic music."""

from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.judge import features as f
from samplegan_tune.judge import metrics as m
from samplegan_tune.judge import timefeatures as tf
from samplegan_tune.judge.collapse import rollout_reasons

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
    # 2-s clips: shorter than a musicnn patch; no primers: no drifts; no reseeded rollouts
    unavailable = {m.NOISE_SPREAD, m.SCORE, m.MUSIC_FD, m.TAG_KL, *m.DRIFTS.values()}
    assert set(why) == unavailable and set(good) == set(m.METRICS)
    assert "noise_spread" in why[m.SCORE]
    assert all(math.isfinite(v) for k, v in good.items() if k not in unavailable - {m.SCORE})
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


# --------------------------------------------------------------------------- time


LOOP_PERIODS = (500, 512, 1237, 4096, 16000)  # 1237: no multiple of any hop or segment size


@pytest.fixture(scope="module")
def primed() -> tuple[torch.Tensor, torch.Tensor]:
    """Unseen synthetic songs (another seed than `music`): 8 primers (the 1 s before a point)
    and the real 2 s continuations after those points, (8, SR) and (8, CLIP)."""
    songs = synthetic_songs(60.0, SR, seed=22)
    starts = [(audio, s * SR) for _, audio in songs for s in (3, 9, 15, 21)]
    primers = torch.stack([audio[s - SR : s] for audio, s in starts])
    return primers, torch.stack([audio[s : s + CLIP] for audio, s in starts])


def loop(primers: torch.Tensor, period: int) -> torch.Tensor:
    """The last `period` samples of each primer repeated to (B, CLIP)."""
    return primers[:, -period:].repeat(1, CLIP // period + 1)[:, :CLIP]


def test_lag_distances_match_a_direct_computation() -> None:
    frames = torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(5))
    fast = tf.lag_distances(frames, 3, 20)
    for lag in (3, 11, 20):
        direct = (frames[:, lag:] - frames[:, :-lag]).pow(2).mean((1, 2)).sqrt()
        assert torch.allclose(fast[:, lag - 3].float(), direct, atol=1e-5)


def test_every_loop_reads_as_repetition_whatever_its_period(
    reference: m.RealReference, primed: tuple[torch.Tensor, torch.Tensor]
) -> None:
    primers, real = primed
    honest, _ = m.evaluate_clips(real, reference)
    assert 0.6 < honest[m.REPETITION] < 1.5 and 0.6 < honest[m.CHANGE] < 1.5
    for period in (*LOOP_PERIODS, 16016):  # 16016: a 1 s loop 16 samples (½ hop) off the hop
        looped, _ = m.evaluate_clips(loop(primers, period), reference)
        assert looped[m.REPETITION] < 0.05, period


def test_every_failure_scores_clearly_worse_than_the_real_continuation(
    reference: m.RealReference, primed: tuple[torch.Tensor, torch.Tensor]
) -> None:
    primers, real = primed
    real_score = m.evaluate_clips(real, reference)[0][m.SCORE]
    other_songs = clips_of(synthetic_songs(30.0, SR, seed=23))[:8]  # real vs real
    worst_real = max(real_score, m.evaluate_clips(other_songs, reference)[0][m.SCORE])
    level = primers.pow(2).mean(1, keepdim=True).sqrt()  # (8, 1) the primers' RMS
    t = torch.arange(CLIP) / SR
    chord = sum(torch.sin(2 * math.pi * hz * t) for hz in (220.0, 277.2, 329.6))
    failures = {f"loop {p}": loop(primers, p) for p in LOOP_PERIODS}
    failures["frozen spectrum (a held chord)"] = chord[None] / chord.std() * level
    failures["decaying transient"] = real * torch.exp(-t / 0.2)
    failures["noise at the primers' level"] = noise(8) / 0.1 * level
    for (
        name,
        clips,
    ) in failures.items():  # the judge's contract (samplegan_tune/judge/calibration.py)
        score = m.evaluate_clips(clips, reference)[0][m.SCORE]
        assert score > worst_real, (name, score, worst_real)
        assert rollout_reasons(clips, reference) or score >= 1.5 * worst_real, name
    identical, _ = m.evaluate_clips(real, reference, real[:2])  # both "seeds" gave `real`
    assert identical[m.NOISE_SPREAD] == 0.0 and identical[m.SCORE] > worst_real
    assert "noise_ignored" in rollout_reasons(real, reference, noise_spread=0.0)


def test_noise_spread_is_zero_for_one_output_and_near_one_for_other_music(
    music: torch.Tensor, reference: m.RealReference
) -> None:
    same = torch.stack([music[20:24], music[20:24]])  # (K = 2, B = 4, T)
    assert m.noise_spread(same, reference) == 0.0
    other = torch.stack([music[20:24], music[24:28], music[26:30]])  # (3, 4, T)
    assert 0.6 < m.noise_spread(other, reference) < 1.5
    values, reasons = m.evaluate_clips(music[20:28], reference, music[24:28][None])
    assert 0.6 < values[m.NOISE_SPREAD] < 1.5 and m.NOISE_SPREAD not in reasons
    with pytest.raises(ValueError, match="primers"):
        m.evaluate_clips(music[20:22], reference, music[22:26])
