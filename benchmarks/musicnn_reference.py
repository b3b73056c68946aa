"""Record musicnn's real TensorFlow outputs, the reference for tests/test_musicnn.py.

Not a test (tests run only its `--smoke`): it needs a throwaway environment with TensorFlow,
which the project never installs (Python 3.11; recorded with tensorflow-cpu 2.15.1 and
librosa 0.10.2):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" "librosa==0.10.2.post1" "numpy<2"
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python benchmarks/musicnn_reference.py [--out FILE] [--smoke]

For each fixed 6-s signal (`signals()`; tests/test_musicnn.py builds the same ones by the same
formulas) it computes musicnn's input with librosa as `musicnn/extractor.py` does (power mel,
n_fft 512, hop 256, 96 bands; `pad_mode="reflect"`, librosa 0.7's default, which musicnn was
trained with) but in float32 where musicnn casts to float16 (which, under NumPy 2's promotion
rules, overflows to inf on loud input: recorded as `float16_overflow`), cuts it into
187-frame patches every 94 frames (1.5 s), and runs musicnn's own `models.define_model` graph
restored from the wheel's checkpoints. Writes tests/data/musicnn_reference.npz (about 30 KB).
Run it from the repository root.

`--smoke` runs where the project's environment is (no TensorFlow, no librosa): it checks the
signals and their patch layout against the recorded file, then records into a temporary
folder (or --out) only where librosa, TensorFlow and musicnn are all installed, and says
which are missing otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

SR = 16000
SECONDS = 6.0
PATCH_FRAMES = 187
HOP_FRAMES = 94  # round(1.5 s * 16000 / 256): MusicEmbedding's default hop
LOGMEL_FRAMES = (0, 1, 2, 93, 187, 300, 374, 375)  # edges (reflect padding) and interior
MODELS = ("MSD_musicnn", "MTT_musicnn")
RECORDED = Path("tests/data/musicnn_reference.npz")
NEEDED = ("librosa", "tensorflow", "musicnn")  # the throwaway environment's, not the project's


def signals() -> dict[str, np.ndarray]:
    """The fixed test signals, each (96000,) float32 at 16 kHz."""
    t = np.arange(int(SECONDS * SR)) / SR
    chord = sum(
        sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3)) for f in (220.0, 277.18, 329.63)
    )
    chord = 0.1 * chord * np.exp(-3.0 * (t % 0.5))  # a plucked A-major chord every 0.5 s
    noise = 0.1 * np.random.default_rng(0).standard_normal(t.size)
    since_click = t % 0.25
    clicks = 0.5 * np.exp(-since_click / 0.002) * np.sin(2 * np.pi * 1000.0 * since_click)
    loud = np.clip(3.0 * np.sin(2 * np.pi * 110.0 * t), -1.0, 1.0)  # full scale, clipped
    named = {"chord": chord, "noise": noise, "clicks": clicks, "loud": loud}
    return {name: x.astype(np.float32) for name, x in named.items()}


def log_mel(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    """(frames, 96) float32 log-mel, and whether musicnn's float16 version overflows.

    musicnn computes ``np.log10(10000 * mel.astype(np.float16) + 1)``: under NumPy 1.x's
    value-based casting the product is float32, but under NumPy 2's rules (NEP 50) it stays
    float16 and any mel power above 6.55 becomes inf. The check applies NumPy 2's rule.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio, sr=SR, hop_length=256, n_fft=512, n_mels=96, pad_mode="reflect"
    ).T
    with np.errstate(over="ignore"):
        overflow = not np.isfinite(np.log10(np.float16(10000) * mel.astype(np.float16) + 1)).all()
    return np.log10(10000 * mel.astype(np.float32) + 1), overflow


def run_tf(model: str, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """musicnn's (penultimate (N, 200), sigmoid tags (N, 50)) on patches (N, 187, 96)."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, 96])
    is_training = tf.compat.v1.placeholder(tf.bool)
    outputs = models.define_model(x, is_training, model, 50)
    probs, penultimate = tf.nn.sigmoid(outputs[0]), outputs[-1]
    folder = Path(importlib.util.find_spec("musicnn").submodule_search_locations[0])
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, f"{folder / model}/")
        emb, tags = sess.run([penultimate, probs], feed_dict={x: patches, is_training: False})
    return emb, tags


def patch_starts(frames: int) -> range:
    """The first log-mel frame of each 187-frame patch, every `HOP_FRAMES`."""
    return range(0, frames - PATCH_FRAMES + 1, HOP_FRAMES)


def record(out: Path) -> None:
    """Record every model's outputs on every signal and save them to `out`."""
    import librosa
    import tensorflow as tf

    named = signals()
    logmels, overflow = zip(*(log_mel(x) for x in named.values()), strict=True)
    starts = patch_starts(logmels[0].shape[0])
    patches = np.stack([m[s : s + PATCH_FRAMES] for m in logmels for s in starts])
    saved = {
        "signals": np.array(list(named)),
        "logmel_frame_index": np.array(LOGMEL_FRAMES),
        "logmel_frames": np.stack([m[list(LOGMEL_FRAMES)] for m in logmels]),
        "float16_overflow": np.array(overflow),
        "tensorflow_version": np.array(tf.__version__),
        "librosa_version": np.array(librosa.__version__),
    }
    shape = (len(named), len(starts))
    for model in MODELS:
        emb, tags = run_tf(model, patches)
        saved[f"{model}/embedding"] = emb.reshape(*shape, -1)
        saved[f"{model}/tag_probs"] = tags.reshape(*shape, -1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **saved)
    print(f"wrote {out} ({out.stat().st_size} bytes); float16 overflow: {overflow}")


def smoke(out: Path | None) -> None:
    """--smoke: the signals and their patch layout against the recorded file; then a recording
    into a temporary folder (or `out`) where librosa, TensorFlow and musicnn are installed."""
    named = signals()
    for name, x in named.items():
        if x.shape != (int(SECONDS * SR),) or x.dtype != np.float32 or not np.isfinite(x).all():
            raise SystemExit(f"smoke: signal {name}: {x.shape} {x.dtype}, expected 6 s float32")
    frames = 1 + int(SECONDS * SR) // 256  # librosa's centred frames, hop 256
    recorded = np.load(RECORDED)
    if list(recorded["signals"]) != list(named):
        raise SystemExit(f"smoke: {RECORDED} holds {list(recorded['signals'])}, not {list(named)}")
    layout = (len(named), len(patch_starts(frames)))
    for model in MODELS:
        if recorded[f"{model}/embedding"].shape[:2] != layout:
            raise SystemExit(f"smoke: {RECORDED} {model}: not {layout} (signals, patches)")
    print(f"signals {', '.join(named)}: {layout[1]} patches each, as {RECORDED} holds")
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"smoke: not recorded: {', '.join(missing)} not installed (see the docstring)")
        return
    record(out or Path(tempfile.mkdtemp(prefix="smoke-musicnn-")) / RECORDED.name)


def main() -> None:
    """Record every model's outputs on every signal and save them (--smoke: check, see above)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"the .npz to write (default: {RECORDED})")
    parser.add_argument("--smoke", action="store_true", help="check what can be, record if able")
    args = parser.parse_args()
    if args.smoke:
        smoke(args.out)
    else:
        record(args.out or RECORDED)


if __name__ == "__main__":
    main()
