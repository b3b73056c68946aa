"""Figures for the listening page, drawn as SVG around PNG pixels: log-mel spectrograms with
time and frequency axes, one colour scale (with its colour bar) for all of a page's images and
the primer's end marked; learning curves with labelled axes and a legend. Tick labels are SVG
text, so they are in the page's DOM."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DYNAMIC_RANGE_DB = 80.0  # the colour scale spans this far below the page's loudest bin
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]])
FREQ_TICKS_HZ = (100, 250, 500, 1000, 2000, 4000, 8000)
PX_PER_SECOND, IMAGE_HEIGHT, MARGIN_LEFT, MARGIN_BOTTOM = 100, 160, 64, 36


def colour_range(spectrograms: list[torch.Tensor]) -> tuple[float, float]:
    """(low, high) dB shared by every image of a page: the loudest bin, rounded up to 10 dB,
    and DYNAMIC_RANGE_DB below it."""
    high = math.ceil(max(float(s.max()) for s in spectrograms) / 10) * 10
    return high - DYNAMIC_RANGE_DB, float(high)


def _colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 (a viridis-like ramp)."""
    position = np.clip(values, 0, 1) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (position - low)[..., None]
    return (_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).astype(np.uint8)


def save_png(db: torch.Tensor, path: Path, low: float, high: float, seconds: float) -> None:
    """Write the spectrogram `db` (N_MELS, F) as an image PX_PER_SECOND wide per second."""
    scaled = ((db - low) / (high - low)).flip(0).numpy()  # high frequencies at the top
    width = max(1, round(seconds * PX_PER_SECOND))
    Image.fromarray(_colours(scaled)).resize((width, IMAGE_HEIGHT), Image.NEAREST).save(path)


def _mel_of(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def spectrogram_svg(
    png: str, seconds: float, rate: int, primer_end: float | None, title: str
) -> str:
    """An SVG showing `png` with a time axis (s), a mel-spaced frequency axis (Hz) and a dashed
    line where the primer ends."""
    width = round(seconds * PX_PER_SECOND)
    total_w, total_h = MARGIN_LEFT + width + 8, IMAGE_HEIGHT + MARGIN_BOTTOM + 18
    top_mel = _mel_of(rate / 2)
    parts = [
        f"<image href='{html.escape(png)}' x='{MARGIN_LEFT}' y='18' width='{width}' "
        f"height='{IMAGE_HEIGHT}' preserveAspectRatio='none'/>",
        f"<text x='{MARGIN_LEFT}' y='12' class='title'>{html.escape(title)}</text>",
    ]
    for second in range(int(seconds) + 1):
        x = MARGIN_LEFT + second * PX_PER_SECOND
        parts.append(
            f"<line x1='{x}' y1='{18 + IMAGE_HEIGHT}' x2='{x}' "
            f"y2='{22 + IMAGE_HEIGHT}' stroke='#333'/>"
            f"<text class='tick x' x='{x}' y='{34 + IMAGE_HEIGHT}'>{second}</text>"
        )
    for hz in (f for f in FREQ_TICKS_HZ if f < rate / 2):
        y = 18 + IMAGE_HEIGHT * (1 - _mel_of(hz) / top_mel)
        label = f"{hz // 1000}k" if hz >= 1000 else str(hz)
        parts.append(
            f"<line x1='{MARGIN_LEFT - 4}' y1='{y:.1f}' x2='{MARGIN_LEFT}' y2='{y:.1f}' "
            f"stroke='#333'/><text class='tick y' x='{MARGIN_LEFT - 6}' y='{y + 4:.1f}' "
            f"text-anchor='end'>{label}</text>"
        )
    if primer_end is not None:
        x = MARGIN_LEFT + primer_end * PX_PER_SECOND
        parts.append(
            f"<line class='primer-end' x1='{x}' y1='18' x2='{x}' y2='{18 + IMAGE_HEIGHT}' "
            "stroke='white' stroke-dasharray='4 3' stroke-width='2'/>"
            f"<text x='{x + 3}' y='30' fill='white' font-size='11'>primer ends</text>"
        )
    parts.append(
        f"<text x='{MARGIN_LEFT + width / 2}' y='{total_h - 2}' text-anchor='middle' "
        "font-size='12'>time (s)</text>"
        f"<text x='12' y='{18 + IMAGE_HEIGHT / 2}' font-size='12' text-anchor='middle' "
        f"transform='rotate(-90 12 {18 + IMAGE_HEIGHT / 2})'>frequency (Hz, mel)</text>"
    )
    return (
        f"<svg class='spectrogram' width='{total_w}' height='{total_h}' role='img' "
        f"font-size='11'>{''.join(parts)}</svg>"
    )


def colour_bar_svg(low: float, high: float) -> str:
    """The page's one colour scale: dB from `low` to `high`."""
    stops = "".join(
        f"<stop offset='{i / (len(_ANCHORS) - 1):.2f}' stop-color='rgb{tuple(c)}'/>"
        for i, c in enumerate(_ANCHORS.tolist())
    )
    ticks = "".join(
        f"<text class='tick' x='{10 + 300 * i / 4:.0f}' y='40' text-anchor='middle'>"
        f"{low + (high - low) * i / 4:.0f}</text>"
        for i in range(5)
    )
    return (
        "<svg id='colour-bar' width='330' height='58' role='img' font-size='11'>"
        f"<defs><linearGradient id='ramp'>{stops}</linearGradient></defs>"
        f"<rect x='10' y='8' width='300' height='18' fill='url(#ramp)'/>{ticks}"
        "<text x='160' y='55' text-anchor='middle'>log-mel power (dB), every spectrogram "
        "on this page</text></svg>"
    )


def curves_svg(curves: dict[str, list[tuple[int, float]]], highlight: list[str]) -> str:
    """quality/score per report (log axis) for every trial; `highlight` (the top trials) in
    colour with a legend entry each, the others grey."""
    shown = {k: v for k, v in curves.items() if v}
    if not shown:
        return "<p>No healthy reports to plot.</p>"
    width, height, left, bottom = 900, 320, 70, 50
    xs = [x for c in shown.values() for x, _ in c]
    ys = [math.log10(max(y, 1e-6)) for c in shown.values() for _, y in c]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = math.floor(min(ys) * 10) / 10, math.ceil(max(ys) * 10) / 10 + 1e-9

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - 20)

    def py(y: float) -> float:
        return (
            height - bottom - (math.log10(max(y, 1e-6)) - y0) / (y1 - y0) * (height - bottom - 20)
        )

    palette = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    colour = {t: palette[i % len(palette)] for i, t in enumerate(highlight)}
    lines = [
        f"<polyline fill='none' stroke='{colour.get(t, '#bbb')}' "
        f"stroke-width='{2.5 if t in colour else 1}' points='"
        + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in c)
        + f"'><title>{html.escape(t)}</title></polyline>"
        for t, c in sorted(shown.items(), key=lambda kv: kv[0] in colour)
    ]
    axes = [
        f"<line x1='{left}' y1='{height - bottom}' x2='{width - 20}' y2='{height - bottom}' "
        f"stroke='#333'/><line x1='{left}' y1='20' x2='{left}' y2='{height - bottom}' "
        "stroke='#333'/>"
    ]
    for x in range(int(x0), int(x1) + 1):
        axes.append(
            f"<text class='tick x' x='{px(x):.1f}' y='{height - bottom + 16}' "
            f"text-anchor='middle'>{x}</text>"
        )
    for k in range(5):
        value = 10 ** (y0 + (y1 - y0) * k / 4)
        axes.append(
            f"<text class='tick y' x='{left - 6}' y='{py(value) + 4:.1f}' "
            f"text-anchor='end'>{value:.3g}</text>"
        )
    axes.append(
        f"<text x='{(left + width) / 2}' y='{height - 12}' text-anchor='middle'>"
        "report</text><text x='14' y='150' transform='rotate(-90 14 150)' "
        "text-anchor='middle'>quality/score (log scale, lower is better)</text>"
    )
    legend = _legend(highlight, colour, width - 230)
    return (
        f"<svg id='curves' width='{width}' height='{height}' role='img' font-size='11'>"
        f"{''.join(axes + lines + legend)}</svg>"
    )


def _legend(highlight: list[str], colour: dict[str, str], x: int) -> list[str]:
    """A line per highlighted trial (its rank), then one for the grey others."""
    legend = [
        f"<text x='{x}' y='{30 + 16 * i}' fill='{colour[t]}'>— {html.escape(t)}"
        f"{' (rank ' + str(i + 1) + ')'}</text>"
        for i, t in enumerate(highlight)
    ]
    legend.append(f"<text x='{x}' y='{30 + 16 * len(highlight)}' fill='#999'>— other trials</text>")
    return legend
