"""What every trial of a search shares: the held-out audio split into a search part and a
final part that the re-ranking uses, so no checkpoint is re-judged on the primers that
picked it."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch

from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
from tests.conftest import smoke_experiment


def experiment(tmp_path: Path, data: list[str]) -> Experiment:
    return smoke_experiment(
        tmp_path / "e", data=data, num_samples=1, cache_dir=str(tmp_path / "cache")
    )


def _overlap(a: torch.Tensor, b: torch.Tensor, probe: int = 2048) -> bool:
    """Whether a stretch of `b` occurs verbatim in `a`."""
    needle = b[:probe]
    windows = a.unfold(0, probe, 1)
    return bool((windows == needle).all(dim=1).any())


def test_final_primers_come_from_audio_the_search_never_primes_from(tmp_path: Path) -> None:
    songs = synthetic_songs(seconds=120.0, sample_rate=16000, seed=5)
    one_file = torch.cat([song for _, song in songs])  # a single file: split by time
    sf.write(str(tmp_path / "album.wav"), one_file.numpy(), 16000, subtype="FLOAT")
    data = prepare_trial_data(experiment(tmp_path, [str(tmp_path / "album.wav")]))
    assert data.final is not None and data.final_reference is not None
    search_audio = torch.cat([data.heldout.file(i) for i in range(len(data.heldout.names))])
    final_audio = torch.cat([data.final.file(i) for i in range(len(data.final.names))])
    assert not _overlap(search_audio, final_audio) and not _overlap(final_audio, search_audio)
    assert data.ranking_part == (data.final, data.final_reference)


def test_the_built_in_corpus_is_split_by_file(tmp_path: Path) -> None:
    data = prepare_trial_data(experiment(tmp_path, ["synthetic"]))
    assert data.final is not None
    assert set(data.heldout.names).isdisjoint(data.final.names) or (
        len(data.heldout.names) == len(data.final.names) == 1
    )
