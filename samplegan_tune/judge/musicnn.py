"""Pretrained musicnn music embedding (Pons & Serra 2019) in PyTorch, with no TensorFlow.

The weights are the TF-1 checkpoints that the ``musicnn==0.1.0`` wheel ships (ISC licence),
read here with numpy alone; install them with ``pip install --no-deps musicnn==0.1.0`` (its
declared TensorFlow dependency is neither needed nor installable on current Pythons).

The pipeline follows ``musicnn/extractor.py`` and ``musicnn/models.py``: 16 kHz audio, a
librosa-0.7-style power mel spectrogram (512-point periodic Hann, hop 256, centred with
reflect padding, 96 Slaney mel bands), ``log10(10000 * mel + 1)``, then 187-frame (3 s)
patches through the musically motivated front end, the dense mid end and the pooling back end.
One deliberate difference: musicnn casts the mel spectrogram to float16 before the log, which
under NumPy 2's promotion rules overflows to ``inf`` on loud input; here all is float32.

Example::

    net = MusicEmbedding.load("MSD_musicnn", device="cpu")
    emb = net.embed(audio)  # (B, T) at 16 kHz -> (B, P, 200)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.judge.tfbundle import read_tensor_bundle

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn's extractor computes it
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP  # shortest clip that yields one patch (2.976 s)
MODELS = ("MSD_musicnn", "MTT_musicnn")
INSTALL_COMMAND = "pip install --no-deps musicnn==0.1.0"
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default


# --- Mel front end ------------------------------------------------------------------------


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's ``htk=False``)."""
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), hz)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> np.ndarray:
    """librosa's default mel filterbank (Slaney scale, area-normalized), 0 Hz to Nyquist.

    Returns:
        float32 array of shape (n_mels, n_fft // 2 + 1).
    """
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    low, high = _hz_to_mel(np.array([0.0, sample_rate / 2]))
    mel_hz = _mel_to_hz(np.linspace(low, high, n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """musicnn's input: ``log10(10000 * mel_power + 1)``, computed in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        fbank = torch.from_numpy(mel_filterbank())
        self.register_buffer("fbank", fbank, persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        """Map audio (B, T) at 16 kHz to log-mel frames (B, 1 + T // 256, 96)."""
        stft = dict(window=self.window, center=True, pad_mode="reflect", return_complex=True)
        spec = torch.stft(audio, N_FFT, HOP, **stft)  # (B, 257, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.fbank, power)  # (B, 96, frames)
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


# --- The musicnn network ------------------------------------------------------------------


def _bn(channels: int, dims: int = 1) -> nn.Module:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=_BN_EPS)


class MusicnnNet(nn.Module):
    """musicnn's ``build_musicnn`` (front end, dense mid end, pooling back end) in PyTorch.

    Args:
        n_tags: number of output tags.
        midend_filters: mid-end conv filters.
        backend_units: penultimate dense units.
    """

    def __init__(self, n_tags: int = 50, midend_filters: int = 64, backend_units: int = 200):
        super().__init__()
        self.bn_input = _bn(1, dims=2)
        # Timbral convs span 7 frames x 40% / 70% of the mel bands; temporal convs span
        # 128 / 64 / 32 frames x 1 band. Filter counts are int(1.6 * 128) and int(1.6 * 32).
        self.timbral = nn.ModuleList(nn.Conv2d(1, 204, (7, w)) for w in (38, 67))
        self.timbral_bn = nn.ModuleList(_bn(204, dims=2) for _ in range(2))
        self.temporal = nn.ModuleList(nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32))
        self.temporal_bn = nn.ModuleList(_bn(51, dims=2) for _ in range(3))
        front = 2 * 204 + 3 * 51
        self.midend = nn.ModuleList(
            nn.Conv1d(c, midend_filters, 7, padding=3)
            for c in (front, midend_filters, midend_filters)
        )
        self.midend_bn = nn.ModuleList(_bn(midend_filters) for _ in range(3))
        features = front + 3 * midend_filters
        self.bn_pool = _bn(2 * features)
        self.dense = nn.Linear(2 * features, backend_units)
        self.bn_dense = _bn(backend_units)
        self.out = nn.Linear(backend_units, n_tags)

    def _frontend(self, logmel: Tensor) -> Tensor:
        """Log-mel patches (N, frames, 96) -> front-end features (N, 561, frames)."""
        x = self.bn_input(logmel.unsqueeze(1))  # (N, 1, frames, 96)
        padded = F.pad(x, (0, 0, 3, 3))
        feats = [
            _relu_bn_max(conv(padded), bn)
            for conv, bn in zip(self.timbral, self.timbral_bn, strict=True)
        ]
        for conv, bn in zip(self.temporal, self.temporal_bn, strict=True):
            k = conv.kernel_size[0]
            same = F.pad(x, (0, 0, (k - 1) // 2, k // 2))  # TF "same": the extra row goes after
            feats.append(_relu_bn_max(conv(same), bn))
        return torch.cat(feats, dim=1)

    def forward(self, logmel: Tensor) -> tuple[Tensor, Tensor]:
        """Run the network on log-mel patches.

        Args:
            logmel: (N, frames, 96) log-mel patches; musicnn was trained on 187 frames.

        Returns:
            ``(penultimate, logits)``: (N, 200) batch-normalized penultimate activations (the
            extractor's ``'penultimate'`` feature) and (N, 50) tag logits.
        """
        front = self._frontend(logmel)
        layers = [front]
        h = front
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True)):
            h = bn(F.relu(conv(h))) + (h if i else 0.0)  # residual after the first layer
            layers.append(h)
        features = torch.cat(layers, dim=1)  # (N, 753, frames)
        # TF concatenates [max, mean] on a trailing axis then flattens: interleaved per feature.
        pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
        return penultimate, self.out(penultimate)


def _relu_bn_max(conv_out: Tensor, bn: nn.Module) -> Tensor:
    """Max over frequency of ``bn(relu(conv_out))``: (N, C, frames, bands) -> (N, C, frames).

    In eval mode batch norm is a per-channel affine map, monotonic, so its maximum is taken at
    the input's maximum where the scale is positive and at its minimum where it is negative;
    this skips two passes over the largest tensors of the network.
    """
    low, high = torch.aminmax(conv_out, dim=3)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
    shift = bn.bias - bn.running_mean * scale
    picked = torch.where(scale[:, None] >= 0, high, low).relu()
    return picked * scale[:, None] + shift[:, None]


def _tf_layers(net: MusicnnNet) -> list[tuple[str, nn.Module]]:
    """(TF layer name, torch module), numbered in the order models.py creates the TF layers."""
    convs = [*net.timbral, *net.temporal, *net.midend]
    norms = [net.bn_input, *net.timbral_bn, *net.temporal_bn, *net.midend_bn]
    named = [("conv2d", convs), ("batch_normalization", [*norms, net.bn_pool, net.bn_dense])]
    named.append(("dense", [net.dense, net.out]))
    return [(f"{base}_{i}" if i else base, m) for base, mods in named for i, m in enumerate(mods)]


def _torch_weight(kernel: np.ndarray, module: nn.Module) -> np.ndarray:
    if isinstance(module, nn.Linear):
        return kernel.T  # (in, out) -> (out, in)
    if isinstance(module, nn.Conv1d):
        return kernel[:, :, 0, :].transpose(2, 1, 0)  # (7, C, 1, out) -> (out, C, 7)
    return kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)


def load_weights(net: MusicnnNet, tensors: dict[str, np.ndarray]) -> None:
    """Copy a musicnn checkpoint's variables (as read by ``read_tensor_bundle``) into ``net``."""
    state = {}
    prefixes = {id(module): name for name, module in net.named_modules()}
    for tf_name, module in _tf_layers(net):
        prefix = prefixes[id(module)]
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parts = {"weight": "gamma", "bias": "beta"}
            parts |= {"running_mean": "moving_mean", "running_var": "moving_variance"}
            state |= {f"{prefix}.{k}": tensors[f"{tf_name}/{v}"] for k, v in parts.items()}
            state[f"{prefix}.num_batches_tracked"] = np.array(0)
        else:
            state[f"{prefix}.weight"] = _torch_weight(tensors[f"{tf_name}/kernel"], module)
            state[f"{prefix}.bias"] = tensors[f"{tf_name}/bias"]
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})


# --- Public API -----------------------------------------------------------------------------


def checkpoint_prefix(model: str) -> str:
    """Where the installed musicnn wheel keeps ``model``'s checkpoint (a TF prefix).

    Raises:
        UserInputError: ``model`` is not a musicnn model, or the wheel is not installed.
    """
    if model not in MODELS:
        raise UserInputError(f"unknown musicnn model {model!r}; choose one of {', '.join(MODELS)}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"the musicnn weights are not installed: run `{INSTALL_COMMAND}`")
    folder = Path(next(iter(spec.submodule_search_locations))) / model
    if not (folder / ".index").is_file():
        raise UserInputError(f"{folder} holds no checkpoint: reinstall with `{INSTALL_COMMAND}`")
    return f"{folder}/"


@contextlib.contextmanager
def _ieee_fp32(device: torch.device) -> Iterator[None]:
    """Keep CUDA convolutions in IEEE fp32 (cuDNN defaults to TF32 on Ampere and later)."""
    if device.type != "cuda":
        yield
        return
    conv = torch.backends.cudnn.conv
    saved, conv.fp32_precision = conv.fp32_precision, "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = saved


@dataclass(frozen=True)
class MusicnnOutput:
    """musicnn's outputs for every 3-s patch of every clip.

    Attributes:
        embedding: (B, P, 200) penultimate-layer activations.
        tag_probs: (B, P, 50) sigmoid tag probabilities, in ``MusicEmbedding.tag_names`` order.
    """

    embedding: Tensor
    tag_probs: Tensor


class MusicEmbedding(nn.Module):
    """A pretrained musicnn: 16 kHz audio in, 200-d embeddings and 50 tag probabilities out.

    Build it once with :meth:`load` and keep it: it is frozen, float32 and always in eval mode
    (a parent's ``.train()`` does not switch its batch norms to batch statistics).
    """

    def __init__(self, net: MusicnnNet, tag_names: tuple[str, ...], model: str) -> None:
        super().__init__()
        self.logmel = LogMel()
        self.net = net
        self.tag_names = tag_names
        self.model = model
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> MusicEmbedding:
        """Stay in eval mode whatever ``mode``: the batch norms must use the stored statistics."""
        return super().train(False)

    @classmethod
    def load(cls, model: str = "MSD_musicnn", device: str | torch.device = "cpu") -> MusicEmbedding:
        """Read ``model``'s weights from the installed musicnn wheel (no TensorFlow needed).

        Args:
            model: ``"MSD_musicnn"`` (Million Song Dataset tags) or ``"MTT_musicnn"``
                (MagnaTagATune tags).
            device: where to put the module.

        Raises:
            UserInputError: unknown model, or the musicnn wheel is not installed.
        """
        prefix = checkpoint_prefix(model)
        net = MusicnnNet()
        load_weights(net, read_tensor_bundle(prefix))
        labels = importlib.import_module("musicnn.configuration")  # plain constants, no TF
        tags = tuple(labels.MSD_LABELS if model.startswith("MSD") else labels.MTT_LABELS)
        return cls(net, tags, model).to(device)

    def patches(self, audio: Tensor, hop_seconds: float = 1.5) -> Tensor:
        """Cut audio (B, T) at 16 kHz into log-mel patches (B, P, 187, 96), ``hop_seconds`` apart.

        P = 1 + (frames - 187) // hop_frames with frames = 1 + T // 256; a tail shorter than a
        hop is dropped, as musicnn's extractor does.
        """
        if audio.dim() != 2 or audio.shape[1] < MIN_SAMPLES:
            raise ValueError(
                f"musicnn needs audio (B, T) with T >= {MIN_SAMPLES}, got {tuple(audio.shape)}"
            )
        step = max(1, round(hop_seconds * SAMPLE_RATE / HOP))
        device = self.logmel.fbank.device
        logmel = self.logmel(audio.to(device=device, dtype=torch.float32))  # (B, frames, 96)
        return logmel.unfold(1, PATCH_FRAMES, step).transpose(2, 3)  # (B, P, 187, 96)

    @torch.inference_mode()
    def forward(self, audio: Tensor, hop_seconds: float = 1.5, chunk: int = 32) -> MusicnnOutput:
        """Embed and tag every patch of audio (B, T) at 16 kHz; ``chunk`` patches at a time."""
        patches = self.patches(audio, hop_seconds)
        batch, n_patches = patches.shape[:2]
        flat = patches.reshape(batch * n_patches, PATCH_FRAMES, N_MELS)
        with _ieee_fp32(flat.device):
            outs = [self.net(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)]
        embedding = torch.cat([e for e, _ in outs]).reshape(batch, n_patches, -1)
        logits = torch.cat([t for _, t in outs]).reshape(batch, n_patches, -1)
        return MusicnnOutput(embedding=embedding, tag_probs=torch.sigmoid(logits))

    def embed(self, audio: Tensor, hop_seconds: float = 1.5) -> Tensor:
        """Map audio (B, T) at 16 kHz to penultimate embeddings (B, P, 200)."""
        return self(audio, hop_seconds).embedding

    def tags(self, audio: Tensor, hop_seconds: float = 1.5) -> Tensor:
        """Map audio (B, T) at 16 kHz to tag probabilities (B, P, 50) (see ``tag_names``)."""
        return self(audio, hop_seconds).tag_probs
