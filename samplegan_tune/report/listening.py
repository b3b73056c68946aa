"""The listening page: for each top trial a continuation and, beside it, the true continuation
of the same primer (A/B, players and spectrograms on one colour scale); the score scale;
learning curves; how every trial ended and why; Optuna's hyperparameter importances. One
static HTML folder (`listening/`: index.html and media/)."""

from __future__ import annotations

import html
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from samplegan_tune.audio.corpus import WindowSampler
from samplegan_tune.audio.sound import mel_db, write_wav
from samplegan_tune.core.fileio import atomic_path, writing
from samplegan_tune.judge.scale import position
from samplegan_tune.report.figures import (
    colour_bar_svg,
    colour_range,
    curves_svg,
    save_png,
    spectrogram_svg,
)
from samplegan_tune.train.rollout import rollout
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.leaderboard import (
    Entry,
    Leaderboard,
    budget_line,
    describe_position,
    sig3,
)
from samplegan_tune.tuning.outcomes import COMPLETED, FINAL_FIT
from samplegan_tune.tuning.ranking import TrialSummary, load_ranked_model
from samplegan_tune.tuning.trial import PRIMER_SEED, TrialData

PAGE_DIR = "listening"
SHOWN = 5  # top trials with audio on the page
PRIMER_SHOWN_S, CONTINUATION_S = 1.0, 4.0  # what each clip on the page holds
_STYLE = """body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
font-size:14px;text-align:left;vertical-align:top}.trial{border:1px solid #ddd;padding:1em;
margin:1em 0}.ab{display:flex;gap:1.5em;flex-wrap:wrap}.ab figure{margin:0}
svg text.title{font-weight:bold}.flagged{color:#b00}code{font-size:12px}"""


@dataclass
class _Clip:
    stem: str  # media file name without suffix
    title: str
    audio: torch.Tensor  # (T,) primer (PRIMER_SHOWN_S) then continuation


def write_page(
    exp: Experiment, data: TrialData, board: Leaderboard, summaries: list[TrialSummary]
) -> Path:
    """Write `listening/index.html` and its media into the experiment folder."""
    folder = exp.folder / PAGE_DIR
    (folder / "media").mkdir(parents=True, exist_ok=True)
    shown = board.entries[:SHOWN]
    pairs = [_ab_clips(exp, data, e) for e in shown]
    rate = exp.base_config.sample_rate
    spectra = {c.stem: mel_db(c.audio, rate) for pair in pairs for c in pair}
    low, high = colour_range(list(spectra.values())) if spectra else (-80.0, 0.0)
    blocks = []
    for entry, pair in zip(shown, pairs, strict=True):
        with writing(folder / "media"):  # a full disk: one line naming the folder, exit 2
            figures = [_figure(folder, c, spectra[c.stem], low, high, rate) for c in pair]
        blocks.append(_trial_block(entry, figures, board.scale))
    parts = [
        f"<h1>{html.escape(exp.name)}</h1>",
        f"<p>Space <b>{html.escape(exp.space_name)}</b>: {html.escape(exp.space.description)}"
        f"<br>Data: {html.escape(data.description)}<br>quality/score: lower is better. Final "
        "scores, the scale and the clips below come from primers in the held-out audio's "
        "final part, which the search never used.</p>",
        "<h2>How to read a score</h2>",
        _scale_table(board),
        "<h2>Top trials: generated (A) beside the true continuation (B)</h2>",
        colour_bar_svg(low, high) if blocks else "<p>No trial survived to be ranked.</p>",
        *blocks,
        "<h2>Learning curves</h2>",
        curves_svg({s.trial_id: s.curve for s in summaries}, [e.trial_id for e in shown]),
        "<h2>How trials ended</h2>",
        f"<p>{html.escape(budget_line(board))}</p>" if board.budget else "",
        _outcome_table(summaries),
        _early_endings(summaries),
        "<h2>Hyperparameter importance (Optuna, PED-ANOVA)</h2>",
        _importance_table(exp),
    ]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(exp.name)} — "
        f"samplegan-tune</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    with atomic_path(folder / "index.html") as path:  # a full disk: OutputError, no half page
        path.write_text(page)
    return folder / "index.html"


def _ab_clips(exp: Experiment, data: TrialData, entry: Entry) -> tuple[_Clip, _Clip]:
    """The entry's continuation of one held-out primer, and what really followed it."""
    model, _ = load_ranked_model(exp.folder, entry)
    rate, context = model.cfg.sample_rate, model.cfg.context
    head = max(context, round(PRIMER_SHOWN_S * rate))
    length = round(CONTINUATION_S * rate)
    heldout, _ = data.ranking_part
    window = WindowSampler(heldout).fixed_windows(1, head + length, PRIMER_SEED)[0]
    primer, truth = window[:head], window[head:]
    generated = rollout(model, primer[None], length, seed=0)[0].float().cpu()
    shown = primer[-round(PRIMER_SHOWN_S * rate) :]
    return (
        _Clip(f"rank{entry.rank}-generated", "A: generated", torch.cat([shown, generated])),
        _Clip(f"rank{entry.rank}-true", "B: true continuation", torch.cat([shown, truth])),
    )


def _figure(folder: Path, clip: _Clip, db: torch.Tensor, low: float, high: float, rate: int) -> str:
    """Write the clip's WAV and spectrogram PNG; return a player above the labelled figure."""
    write_wav(folder / "media" / f"{clip.stem}.wav", clip.audio, rate)
    seconds = clip.audio.shape[0] / rate
    save_png(db, folder / "media" / f"{clip.stem}.png", low, high, seconds)
    svg = spectrogram_svg(f"media/{clip.stem}.png", seconds, rate, PRIMER_SHOWN_S, clip.title)
    return (
        f"<figure class='{clip.stem.split('-')[-1]}'>{svg}<br><audio controls preload='none' "
        f"src='media/{clip.stem}.wav'></audio></figure>"
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
        "<p>The same metrics, on references that continue the same held-out primers; "
        "position 0 = real music, 1 = a looped segment.</p>"
        f"<table id='scale'><tr><th>reference</th><th>quality/score</th><th>position</th></tr>"
        f"{rows}</table>{where}"
    )


BASELINE_MARK = " (baseline: the space's defaults, tried first)"


def _continues(entry: Entry) -> str:
    if not entry.continues:
        return ""
    return f" (final fit: trial {html.escape(entry.continues)} trained on to the budget's end)"


def _trial_block(entry: Entry, figures: list[str], scale: dict[str, float]) -> str:
    params = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='param'>{html.escape(str(sig3(v)))}</td></tr>"
        for k, v in sorted(entry.params.items())
    )
    where = describe_position(entry.final_score, scale)
    flag = (
        f"<p class='flagged'><b>Flagged: {html.escape(', '.join(entry.flags))}</b>. No "
        "trial passed the collapse detectors; this is a best attempt, not music.</p>"
        if entry.flags
        else ""
    )
    return (
        f"<div class='trial' id='rank{entry.rank}'><h3>#{entry.rank}: trial "
        f"{html.escape(entry.trial_id)}{_continues(entry)}"
        f"{BASELINE_MARK if entry.baseline else ''}</h3>{flag}"
        f"<p>final score {sig3(entry.final_score)} ± "
        f"{sig3(entry.score_spread)}{f' ({html.escape(where)})' if where else ''}; search "
        f"score {_search_score(entry)}; step {entry.step}. Each clip: "
        f"{PRIMER_SHOWN_S:g} s of the real primer (dashed line: where it ends), then "
        f"{CONTINUATION_S:g} s.</p><div class='ab'>{''.join(figures)}</div>"
        f"<table class='params'>{params}</table></div>"
    )


def _search_score(entry: Entry) -> str:
    if math.isfinite(entry.search_score):
        return str(sig3(entry.search_score))
    return "none (every report was flagged)"


def _outcome_table(summaries: list[TrialSummary]) -> str:
    groups: dict[str, list[TrialSummary]] = defaultdict(list)
    for s in summaries:
        groups[s.outcome].append(s)
    rows = "".join(
        f"<tr><td>{html.escape(o)}</td><td>{len(g)}</td><td>{sum(s.trained_steps for s in g)}</td>"
        f"<td>{sum(s.seconds for s in g):.0f}</td></tr>"
        for o, g in sorted(groups.items())
    )
    head = "<tr><th>outcome</th><th>trials</th><th>training steps</th><th>seconds</th></tr>"
    return f"<table>{head}{rows}</table>"


def _early_endings(summaries: list[TrialSummary]) -> str:
    """Every trial that ended early: its reason and what was measured."""
    rows = "".join(
        f"<tr><td>{html.escape(s.trial_id)}</td><td>{html.escape(s.outcome)}</td>"
        f"<td>{html.escape(s.evidence)}</td></tr>"
        for s in summaries
        if s.evidence or s.outcome not in (COMPLETED, FINAL_FIT)
    )
    if not rows:
        return ""
    head = "<tr><th>trial</th><th>reason</th><th>evidence</th></tr>"
    return f"<table id='early'>{head}{rows}</table>"


def _importance_table(exp: Experiment) -> str:
    try:
        study = exp.study()
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        with warnings.catch_warnings():  # "too few trials" is said below, once
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (KeyError, ValueError, RuntimeError) as err:
        return f"<p>Not available: {html.escape(str(err))}</p>"
    if not importances:
        return "<p>Not available: too few completed trials.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in importances.items()
    )
    return f"<table><tr><th>parameter</th><th>importance</th></tr>{rows}</table>"
