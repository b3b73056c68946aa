from __future__ import annotations

from pathlib import Path

from samplegan_tune.fileio import exchange


def test_exchange_swaps_two_folders_and_both_stay_whole(tmp_path: Path) -> None:
    old, new = tmp_path / "export", tmp_path / ".export.staging"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / "model.safetensors").write_text(text)
        (folder / "manifest.json").write_text(text)
    exchange(new, old)
    assert (old / "model.safetensors").read_text() == "new"
    assert (new / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export.staging", "export"]
