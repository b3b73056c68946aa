from __future__ import annotations

import pytest
import torch

from samplegan_tune.models import level
from samplegan_tune.train import losses


def _logits(value: float) -> list[torch.Tensor]:
    return [torch.full((4, 3), value)]


@pytest.mark.parametrize("kind", ["ns", "hinge", "lsgan", "wgan-gp"])
def test_d_loss_prefers_a_discriminator_that_separates(kind: str) -> None:
    good = losses.d_loss(kind, _logits(2.0), _logits(-2.0))
    bad = losses.d_loss(kind, _logits(-2.0), _logits(2.0))
    assert good < bad
    assert losses.g_loss(kind, _logits(2.0)) < losses.g_loss(kind, _logits(-2.0))


def test_known_values() -> None:
    assert losses.d_loss("hinge", _logits(1.0), _logits(-1.0)) == 0.0
    assert losses.d_loss("lsgan", _logits(1.0), _logits(0.0)) == 0.0
    assert losses.d_loss("wgan-gp", _logits(3.0), _logits(1.0)) == -2.0
    ns = losses.d_loss("ns", _logits(0.0), _logits(0.0))
    assert ns == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert losses.d_accuracy(_logits(1.0), _logits(1.0)) == (1.0, 0.0)


def test_gradient_penalty_is_zero_for_a_unit_slope_critic() -> None:
    real, fake = torch.randn(3, 16), torch.randn(3, 16)
    direction = torch.randn(16)
    direction = direction / direction.norm()

    def critic(x: torch.Tensor) -> list[torch.Tensor]:
        return [x @ direction]

    rng = torch.Generator().manual_seed(0)
    assert losses.gradient_penalty(critic, real, fake, rng) == pytest.approx(0.0, abs=1e-10)
    steep = losses.gradient_penalty(lambda x: [3 * (x @ direction)], real, fake, rng)
    assert steep == pytest.approx(4.0)


def test_feature_matching_and_reconstruction() -> None:
    a = [torch.ones(2, 3), torch.zeros(2, 5)]
    b = [torch.ones(2, 3) * 3, torch.ones(2, 5)]
    assert losses.feature_matching(a, a) == 0.0
    assert losses.feature_matching(a, b) == pytest.approx(1.5)
    x = torch.randn(2, 100)
    assert losses.reconstruction(x, x) == 0.0
    assert losses.reconstruction(x + 0.5, x) == pytest.approx(0.5)


def test_stft_sizes_fit_the_segment() -> None:
    assert losses.stft_sizes(500) == [64, 128, 256]
    assert losses.stft_sizes(4096) == [64, 128, 256, 512]
    assert losses.stft_sizes(40) == [32]


def test_multi_resolution_stft_zero_for_identity_and_orders_errors() -> None:
    t = torch.arange(512) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t)[None]
    near = torch.sin(2 * torch.pi * 460 * t)[None]
    far = torch.randn(1, 512) * 0.7
    sizes = losses.stft_sizes(512)
    assert losses.multi_resolution_stft(tone, tone, sizes) == pytest.approx(0.0, abs=1e-6)
    assert losses.multi_resolution_stft(near, tone, sizes) < losses.multi_resolution_stft(
        far, tone, sizes
    )


def test_loudness_gap_is_linear_in_db() -> None:
    x = torch.randn(3, 256)
    assert level.loudness_gap(x, x) == pytest.approx(0.0, abs=1e-6)
    assert level.loudness_gap(x * 0.1, x) == pytest.approx(1.0, rel=1e-4)  # 20 dB / 20
    assert level.loudness_gap(x * 0.01, x) == pytest.approx(2.0, rel=1e-4)


def test_weighted_total_skips_zero_weights_and_missing_parts() -> None:
    parts = {"a": torch.tensor(2.0), "b": torch.tensor(5.0)}
    assert losses.weighted_total(parts, {"a": 3.0, "b": 0.0, "c": 9.0}) == 6.0


def test_loudness_gap_tolerance_is_a_dead_zone() -> None:
    x = torch.randn(3, 256)
    assert level.loudness_gap(x * 0.1, x, tolerance_db=25.0) == 0.0  # 20 dB gap, tolerated
    assert level.loudness_gap(x * 0.1, x, tolerance_db=5.0) == pytest.approx(0.75, rel=1e-4)


def test_noise_spread_reference_points() -> None:
    a, b = torch.randn(2, 16000), torch.randn(2, 16000)
    assert losses.noise_spread(a, a).tolist() == [0.0, 0.0]
    assert losses.noise_spread(a, b).tolist() == pytest.approx([2**0.5] * 2, rel=0.03)
    assert losses.noise_spread(a, 3 * a).tolist() == pytest.approx([2 / 5**0.5] * 2, rel=1e-4)


def test_mode_seeking_is_finite_has_gradient_and_stops_at_its_target() -> None:
    torch.manual_seed(0)
    za, zb = torch.randn(4, 8), torch.randn(4, 8)
    same = torch.randn(4, 64, requires_grad=True)
    other = same.detach() + 1e-3 * torch.randn(4, 64)  # the noise all but ignored
    loss = losses.mode_seeking(same, other, za, zb, target=1.0)
    assert torch.isfinite(loss) and 0.9 < float(loss.detach()) <= 1.0
    loss.backward()
    assert same.grad is not None and same.grad.abs().sum() > 0
    apart = losses.mode_seeking(torch.randn(4, 64), torch.randn(4, 64), za, zb, target=0.5)
    assert apart == 0.0  # independent outputs are spread enough: no push
    assert torch.isfinite(losses.mode_seeking(same, other, za, za, target=1.0))


@pytest.mark.parametrize(
    ("kind", "real_at", "fake_at"),
    [("ns", 8.0, -8.0), ("hinge", 1.0, -1.0), ("lsgan", 1.0, 0.0), ("wgan-gp", 40.0, 25.0)],
)
def test_d_separation_reads_the_same_at_each_loss_optimum(
    kind: str, real_at: float, fake_at: float
) -> None:
    """Each loss's own saturated targets read 1, its overlap 0.5; where the sign test fails."""
    rng = torch.Generator().manual_seed(0)
    real = [real_at + 0.1 * torch.randn(16, 5, generator=rng)]
    fake = [fake_at + 0.1 * torch.randn(16, 5, generator=rng)]
    assert losses.d_separation(real, fake) == 1.0
    assert losses.d_separation(fake, real) == 0.0
    assert losses.d_separation(real, [real_at + 0.1 * torch.randn(16, 5, generator=rng)]) == (
        pytest.approx(0.5, abs=0.25)
    )
    assert losses.d_separation(_logits(2.0), _logits(2.0)) == 0.5  # ties count ½
    if kind in ("lsgan", "wgan-gp"):  # no sign boundary: the old statistic misreads them
        assert min(losses.d_accuracy(real, fake)) < 0.5
