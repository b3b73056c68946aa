"""One typed, frozen configuration for the whole trainer; search spaces use its field names.

`TrainConfig.from_dict` rejects unknown keys and out-of-range values with the key, the value and
what is allowed, so a typo in a YAML file or a `--set` never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import read_yaml

ADV_LOSSES = ("ns", "hinge", "lsgan", "wgan-gp")
SEED_SOURCES = ("latent", "reconstruction")
D_KINDS = ("single", "multiscale", "multiperiod")
NORMS = ("spectral", "weight", "none")
GAIN_MODES = ("context", "learned", "free")
MODEL_FAMILIES = ("segment", "latent")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's whole configuration; `from_dict` builds a validated one from plain values."""

    # --- data ---
    sample_rate: int = 16000  # Hz; every corpus is resampled to this
    normalise_dbfs: float = -20.0  # per-file loudness normalisation target; nan disables
    holdout_fraction: float = 0.1  # share of the corpus kept out of training for evaluation
    # --- windows ---
    # The defaults are the best configuration measured (issue 11): the winner of a 30-minute
    # `narrow` search on real music, rounded to two digits (benchmarks/README.md).
    segment: int = 500  # S: samples the generator emits per step (the seed paper's 500)
    context: int = 3000  # C: samples of preceding audio the autoencoder reads, C > S
    crossfade: int = 60  # extra samples generated per step, overlapped with the next segment
    # --- model family (models/): "segment" G emits samples seeded by a context latent (the
    # seed's design); "latent" G continues the context's sequence of latent frames (hop
    # 4**ae_depth samples), decoded by a frame autoencoder trained first (ae_pretrain_steps)
    model_family: str = "segment"
    frame_latent: int = 16  # latent: channels per latent frame
    decoder_finetune: bool = True  # latent: the decoder keeps training in stage 2 (not the encoder)
    # --- context autoencoder ---
    latent: int = 128  # bottleneck size
    ae_channels: int = 16  # width of the first encoder layer (doubles per layer, capped ×8)
    ae_depth: int = 4  # strided conv layers (each downsamples ×4)
    # --- generator ---
    seed_source: str = "latent"  # what seeds G: the AE "latent" or its "reconstruction"
    noise_dim: int = 16  # fresh Gaussian noise concatenated to the seed (0 disables)
    g_channels: int = 64  # width of the first generator block (halves per block, min 16)
    g_depth: int = 4  # upsampling blocks
    g_upsample: int = 2  # upsampling factor per block
    # Level rule (models.LevelRule): "context" a detached gain head regressed on the real level;
    # "learned" a gain head fed the noise, trained through the waveform losses; "free" none.
    gain_mode: str = "context"
    max_gain_db: float = 6.0  # bound on the level relative to the primer's (context, learned)
    level_tolerance_db: float = 3.0  # loudness loss is zero within ±this gap (learned, free)
    noise_film: bool = True  # noise (+ context-noise level) scales/shifts every G block (FiLM)
    # --- discriminators ---
    d_kind: str = "multiscale"  # segment D variant
    d_channels: int = 16
    d_depth: int = 4
    d_norm: str = "spectral"  # never batch norm in D
    d_context: bool = True  # condition D on the context latent (projection)
    d_context_tail: int = 512  # D judges [last K context samples ‖ segment] (CARGAN, ≤ context)
    phase_shuffle: int = 2  # WaveGAN phase shuffle radius in samples (0 disables)
    # --- training ---
    batch_size: int = 8
    lr_g: float = 1.6e-3
    lr_d: float = 2.9e-4
    lr_ae: float = 3.8e-4
    beta1: float = 0.5
    beta2: float = 0.9
    adv_loss: str = "hinge"
    n_critic: int = 1  # D updates per G update
    d_warmup_steps: int = 100  # G trains on reconstruction alone before adversarial training
    ae_pretrain_steps: int = 0  # steps training only the autoencoder
    grad_clip: float = 10.0  # max grad norm per network (0 disables)
    # --- rollout-aware training ---
    rollout_steps: int = 4  # consecutive segments G generates per training example
    scheduled_sampling: float = 0.57  # chance a step's context holds G's own previous output
    # Truncated backprop: gradients flow through G's fed-back output within chunks of tbptt
    # steps (≤ rollout_steps), G's backward runs per chunk (memory bounded by tbptt steps); 0:
    # the fed-back context is always detached and one backward covers the whole rollout.
    tbptt: int = 2
    ctx_noise_max: float = 0.36  # training: context + N(0, u·this·RMS), u ~ U(0, 1), u·this to G
    ctx_noise_gen: float = 0.0  # the same relative noise level at evaluation and generation
    # --- loss weights (0 disables a term) ---
    lambda_adv: float = 1.3
    lambda_seq_adv: float = 1.0  # sequence D over the rollout_steps stitched segments
    lambda_fm: float = 3.9
    lambda_recon_l1: float = 0.69
    lambda_recon_stft: float = 2.9
    lambda_ae: float = 1.0
    lambda_loudness: float = 1.0
    lambda_gp: float = 10.0  # gradient penalty, used by adv_loss=wgan-gp only
    lambda_ms: float = 2.5  # mode seeking: two noises, one context, must give different output
    ms_target: float = 1.0  # output spread / noise spread beyond which mode seeking stops
    # --- speed: neither changes what is computed beyond float rounding ---
    # Forward passes in "fp32" (TF32 convolutions on CUDA) or under "bf16" autocast (less
    # memory; losses and the judge stay fp32). fp32 is the default: on an H200 it ran 1.2-1.5x
    # the steps/s of bf16 at the defaults and at the wide space's largest corner.
    precision: str = "fp32"
    fused_step: bool = True  # one batched D call per side, cached STFT windows (trainer.py)
    # --- bookkeeping ---
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from plain values (YAML, `--set`, a checkpoint), validating each."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserInputError(
                f"unknown config key {unknown[0]!r}; allowed keys: {', '.join(fields)}"
            )
        coerced = {k: _coerce(k, v, fields[k].type) for k, v in values.items()}
        config = cls(**coerced)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain value (what `from_dict` takes back)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied, validated as `from_dict` validates."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @property
    def window(self) -> int:
        """Samples of real audio one training example needs: context + unrolled steps."""
        return self.context + self.rollout_steps * self.segment + self.crossfade

    @property
    def context_tail(self) -> int:
        """Samples of context the segment D sees before each segment (d_context_tail, capped
        at the context, so a space may vary both freely)."""
        return min(self.d_context_tail, self.context)

    @property
    def tbptt_chunk(self) -> int:
        """Rollout steps per truncated-backprop chunk: tbptt capped at rollout_steps; the
        whole rollout when tbptt is 0."""
        return min(self.tbptt, self.rollout_steps) if self.tbptt > 0 else self.rollout_steps

    def validate(self) -> None:
        """Raise UserInputError naming the first value out of its allowed range."""
        for key, allowed, ok in _RULES:
            if not ok(self):
                raise UserInputError(
                    f"config {key}={getattr(self, key)!r} is out of range; allowed: {allowed}"
                )


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    wanted = {"int": int, "float": float, "bool": bool, "str": str}[str(type_name)]
    if wanted is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if wanted is float and value is None:
        return math.nan
    if isinstance(value, wanted) and not (wanted is int and isinstance(value, bool)):
        return value
    raise UserInputError(f"config {key}={value!r} must be of type {wanted.__name__}")


def _positive(key: str) -> tuple[str, str, Any]:
    return key, "> 0", lambda c: getattr(c, key) > 0


def _at_least(key: str, low: float) -> tuple[str, str, Any]:
    return key, f">= {low}", lambda c: getattr(c, key) >= low


def _one_of(key: str, options: tuple[str, ...]) -> tuple[str, str, Any]:
    return key, " | ".join(options), lambda c: getattr(c, key) in options


def _between(key: str, low: float, high: float) -> tuple[str, str, Any]:
    return key, f"{low} ... {high}", lambda c: low <= getattr(c, key) <= high


_LAMBDAS = [f.name for f in dataclasses.fields(TrainConfig) if f.name.startswith("lambda_")]
_RULES: list[tuple[str, str, Any]] = [
    _between("sample_rate", 1000, 192000),
    ("normalise_dbfs", "nan (off) or -60 ... 0", lambda c: not c.normalise_dbfs <= -60),
    ("normalise_dbfs", "nan (off) or -60 ... 0", lambda c: not c.normalise_dbfs > 0),
    _between("holdout_fraction", 0.01, 0.5),
    _between("segment", 16, 65536),
    ("context", "> segment", lambda c: c.context > c.segment),
    ("crossfade", "0 ... segment", lambda c: 0 <= c.crossfade <= c.segment),
    _one_of("model_family", MODEL_FAMILIES),
    _between("frame_latent", 1, 256),
    (
        "ae_pretrain_steps",
        "> 0 when model_family is latent (stage 1 trains the frame autoencoder first)",
        lambda c: c.model_family != "latent" or c.ae_pretrain_steps > 0,
    ),
    _positive("latent"),
    _positive("ae_channels"),
    _between("ae_depth", 1, 8),
    ("ae_depth", "4**ae_depth <= context", lambda c: 4**c.ae_depth <= c.context),
    _one_of("seed_source", SEED_SOURCES),
    _at_least("noise_dim", 0),
    _positive("g_channels"),
    _between("g_depth", 1, 10),
    _between("g_upsample", 2, 8),
    _one_of("gain_mode", GAIN_MODES),
    _between("max_gain_db", 0.5, 40.0),
    _between("level_tolerance_db", 0.0, 40.0),
    _one_of("d_kind", D_KINDS),
    _positive("d_channels"),
    _between("d_depth", 1, 8),
    _one_of("d_norm", NORMS),
    _between("phase_shuffle", 0, 16),
    _at_least("d_context_tail", 0),
    _positive("batch_size"),
    _between("lr_g", 1e-7, 1.0e3),
    _between("lr_d", 1e-7, 1.0e3),
    _between("lr_ae", 1e-7, 1.0e3),
    ("beta1", "0 <= beta1 < 1", lambda c: 0 <= c.beta1 < 1),
    ("beta2", "0 <= beta2 < 1", lambda c: 0 <= c.beta2 < 1),
    _one_of("adv_loss", ADV_LOSSES),
    _between("n_critic", 1, 20),
    _at_least("d_warmup_steps", 0),
    _at_least("ae_pretrain_steps", 0),
    _at_least("grad_clip", 0),
    _between("rollout_steps", 1, 64),
    _between("scheduled_sampling", 0.0, 1.0),
    _at_least("tbptt", 0),
    _between("ctx_noise_max", 0.0, 2.0),
    ("ctx_noise_gen", "0 ... ctx_noise_max", lambda c: 0 <= c.ctx_noise_gen <= c.ctx_noise_max),
    _between("ms_target", 0.01, 10.0),
    *[_at_least(name, 0.0) for name in _LAMBDAS],
    _one_of("precision", PRECISIONS),
]


def parse_set(expression: str) -> tuple[str, Any]:
    """`key=value` -> (key, value), the value read as a YAML scalar (2e-4, true, hinge)."""
    key, sep, text = expression.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise UserInputError(f"--set {expression!r}: expected key=value, e.g. --set lr_g=2e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserInputError(f"--set {expression!r}: cannot read the value ({err})") from err
    if isinstance(value, (list, dict)) or value is None:
        raise UserInputError(f"--set {expression!r}: the value must be a number, word or bool")
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string
    return key, value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(path: str | Path | None, sets: list[str] | None = None) -> TrainConfig:
    """Defaults, overridden by a YAML mapping file, then by `--set key=value` expressions."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml_mapping(Path(path)))
    given: set[str] = set()
    for expression in sets or []:
        key, value = parse_set(expression)
        if key in given:
            raise UserInputError(f"--set {key}: given twice; give each key once")
        given.add(key)
        values[key] = value
    try:
        return TrainConfig.from_dict(values)
    except UserInputError as err:
        where = f"{path}: " if path is not None else ""
        raise UserInputError(f"{where}{err}") from err


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    values = read_yaml(path, "config file")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserInputError(f"{path}: expected a mapping of config keys to values")
    return values
