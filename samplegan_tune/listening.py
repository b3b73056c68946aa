"""The listening page: rollouts and spectrograms of the top trials, learning curves, the
collapse summary and Optuna's hyperparameter importances, as one static HTML folder."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import optuna
import torch
import torchaudio
from PIL import Image

from samplegan_tune.audio import write_wav
from samplegan_tune.data import WindowSampler
from samplegan_tune.experiment import Experiment
from samplegan_tune.leaderboard import Entry, Leaderboard, describe_position, sig3
from samplegan_tune.ranking import TrialSummary, load_ranked_model
from samplegan_tune.rollout import rollout
from samplegan_tune.scale import position
from samplegan_tune.tblog import spectrogram_image
from samplegan_tune.trial import PRIMER_SEED, TrialData

PAGE_DIR = "listening"
SHOWN = 5  # top trials with audio on the page
_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
font-size:14px;text-align:left}img{max-width:100%;image-rendering:pixelated}
.trial{border:1px solid #ddd;padding:1em;margin:1em 0}code{font-size:12px}"""


def write_page(
    exp: Experiment, data: TrialData, board: Leaderboard, summaries: list[TrialSummary]
) -> Path:
    """Write `listening/index.html` (+ audio/ and img/) into the experiment folder."""
    folder = exp.folder / PAGE_DIR
    (folder / "media").mkdir(parents=True, exist_ok=True)
    entries = board.entries
    parts = [
        f"<h1>{html.escape(exp.name)}</h1>",
        f"<p>Space <b>{html.escape(exp.space_name)}</b> — {html.escape(exp.space.description)}"
        f"<br>Data: {html.escape(data.description)}<br>quality/score: lower is better. The "
        "final scores come from primers in the held-out audio's final part, which the search "
        "never used.</p>",
        "<h2>How to read a score</h2>",
        _scale_table(board),
        "<h2>Top trials</h2>",
        _reference_block(folder, data),
        *[_trial_block(folder, exp, data, e, board.scale) for e in entries[:SHOWN]],
        "<h2>Learning curves (quality/score per report)</h2>",
        _curves_svg(summaries, {e.trial_id for e in entries[:SHOWN]}),
        "<h2>How trials ended</h2>",
        _outcome_table(summaries),
        "<h2>Hyperparameter importance (Optuna, PED-ANOVA)</h2>",
        _importance_table(exp),
    ]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(exp.name)}"
        f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    path = folder / "index.html"
    path.write_text(page)
    return path


def _media(folder: Path, stem: str, audio: torch.Tensor, rate: int) -> str:
    """Write a WAV and its spectrogram; return the HTML showing both."""
    write_wav(folder / "media" / f"{stem}.wav", audio, rate)
    mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=1024, hop_length=256, n_mels=80)
    image = (spectrogram_image(audio.float(), mel) * 255).astype(np.uint8)
    Image.fromarray(image).resize((min(4 * image.shape[1], 1000), 160)).save(
        folder / "media" / f"{stem}.png"
    )
    return (
        f"<audio controls preload='none' src='media/{stem}.wav'></audio><br>"
        f"<img alt='spectrogram of {stem}' src='media/{stem}.png'>"
    )


def _reference_block(folder: Path, data: TrialData) -> str:
    rate = data.heldout.sample_rate
    clip = data.heldout.file(0)[: 4 * rate]
    return (
        f"<div class='trial'><h3>Real held-out audio</h3>{_media(folder, 'real', clip, rate)}</div>"
    )


def _scale_table(board: Leaderboard) -> str:
    """The references' scores (real, repeated second, loop, noise) with their position."""
    if not board.scale:
        return "<p>No scale: this search was ranked before scales existed.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{sig3(score)}</td>"
        f"<td>{sig3(position(score, board.scale))}</td></tr>"
        for name, score in board.scale.items()
    )
    top = board.entries[0] if board.entries else None
    where = f"<p>Rank 1 is {describe_position(top.final_score, board.scale)}.</p>" if top else ""
    return (
        "<p class='scale'>The same metrics on references that continue the same held-out "
        "primers; position 0 = real music, 1 = a looped segment.</p>"
        f"<table id='scale'><tr><th>reference</th><th>quality/score</th><th>position</th></tr>"
        f"{rows}</table>{where}"
    )


def _trial_block(
    folder: Path, exp: Experiment, data: TrialData, entry: Entry, scale: dict[str, float]
) -> str:
    model, _ = load_ranked_model(exp.folder, entry)
    rate = model.cfg.sample_rate
    primer = WindowSampler(data.heldout).fixed_windows(1, rate, PRIMER_SEED)
    continuation = rollout(model, primer, 4 * rate, seed=0)[0].cpu()
    audio = torch.cat([primer[0].cpu(), continuation])
    params = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(sig3(v)))}</td></tr>"
        for k, v in sorted(entry.params.items())
    )
    where = describe_position(entry.final_score, scale)
    return (
        f"<div class='trial'><h3>#{entry.rank} — trial {html.escape(entry.trial_id)}</h3>"
        f"<p>final score {sig3(entry.final_score)} ± {sig3(entry.score_spread)}"
        f"{f' ({html.escape(where)})' if where else ''} (search {sig3(entry.search_score)}), "
        f"step {entry.step}. "
        f"1 s of real primer, then 4 s generated.</p>"
        f"{_media(folder, f'rank{entry.rank}', audio, rate)}<table>{params}</table></div>"
    )


def _curves_svg(summaries: list[TrialSummary], highlight: set[str]) -> str:
    curves = [s for s in summaries if s.curve]
    if not curves:
        return "<p>No healthy reports to plot.</p>"
    width, height, pad = 900, 300, 40
    xs = [x for s in curves for x, _ in s.curve]
    ys = [math.log10(max(y, 1e-6)) for s in curves for _, y in s.curve]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-6)

    def point(x: float, y: float) -> str:
        px = pad + (x - x0) / (x1 - x0) * (width - 2 * pad)
        py = height - pad - (math.log10(max(y, 1e-6)) - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{px:.1f},{py:.1f}"

    lines = []
    for s in curves:
        color, stroke = ("#d33", 2.5) if s.trial_id in highlight else ("#999", 1)
        pts = " ".join(point(x, y) for x, y in s.curve)
        lines.append(
            f"<polyline fill='none' stroke='{color}' stroke-width='{stroke}' "
            f"points='{pts}'><title>{html.escape(s.trial_id)}</title></polyline>"
        )
    axes = (
        f"<text x='{pad}' y='{height - 8}'>report {x0} … {x1}</text>"
        f"<text x='4' y='16'>log10 quality/score {y0:.2f} … {y1:.2f} (red: top trials)</text>"
    )
    return f"<svg width='{width}' height='{height}' role='img'>{axes}{''.join(lines)}</svg>"


def _outcome_table(summaries: list[TrialSummary]) -> str:
    groups: dict[str, list[TrialSummary]] = defaultdict(list)
    for s in summaries:
        groups[s.outcome].append(s)
    rows = "".join(
        f"<tr><td>{html.escape(o)}</td><td>{len(g)}</td><td>{sum(s.steps for s in g)}</td>"
        f"<td>{sum(s.seconds for s in g):.0f}</td></tr>"
        for o, g in sorted(groups.items())
    )
    head = "<tr><th>outcome</th><th>trials</th><th>training steps</th><th>seconds</th></tr>"
    return f"<table>{head}{rows}</table>"


def _importance_table(exp: Experiment) -> str:
    try:
        study = exp.study()
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as err:
        return f"<p>Not available: {html.escape(str(err))}</p>"
    if not importances:
        return "<p>Not available: too few completed trials.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items()
    )
    return f"<table><tr><th>parameter</th><th>importance</th></tr>{rows}</table>"
