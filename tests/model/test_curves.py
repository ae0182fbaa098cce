"""linewatch_dev.curves: the synthetic curve generator and the model's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from linewatch_dev.curves import (
    CURVE_KINDS,
    MIN_LENGTH,
    make_batch,
    make_curve,
    preprocess,
    resample,
)


def _roughness(x: np.ndarray) -> float:
    """Median absolute second difference of the z-scored curve: a noise level estimate."""
    z = (x - x.mean()) / x.std()
    return float(np.median(np.abs(np.diff(z, n=2))))


def test_kinds_ok_first_and_unique() -> None:
    assert CURVE_KINDS[0] == "ok"
    assert len(set(CURVE_KINDS)) == len(CURVE_KINDS)
    assert {"spike", "drift", "noise", "step"} <= set(CURVE_KINDS)


@pytest.mark.parametrize("kind", CURVE_KINDS)
@pytest.mark.parametrize("length", [MIN_LENGTH, 200, 333, 400])
def test_make_curve_shape_dtype(kind: str, length: int) -> None:
    x = make_curve(kind, length=length, rng=np.random.default_rng(1))
    assert x.shape == (length,)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()
    assert x.std() > 0


@pytest.mark.parametrize("kind", CURVE_KINDS)
def test_make_curve_deterministic(kind: str) -> None:
    a = make_curve(kind, length=300, rng=np.random.default_rng(42))
    b = make_curve(kind, length=300, rng=np.random.default_rng(42))
    c = make_curve(kind, length=300, rng=np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_curve_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown curve kind"):
        make_curve("wobble", length=100, rng=rng)
    with pytest.raises(ValueError, match="at least"):
        make_curve("ok", length=MIN_LENGTH - 1, rng=rng)


def test_ok_curve_is_a_cycle() -> None:
    """Idle, ramp up to a plateau, ramp down to idle again: ends low, middle high."""
    for seed in range(20):
        x = make_curve("ok", length=300, rng=np.random.default_rng(seed))
        lo, hi = np.percentile(x, [5, 95])
        assert x[0] < lo + 0.2 * (hi - lo)
        assert x[-1] < lo + 0.2 * (hi - lo)
        assert x[112:137].mean() > lo + 0.7 * (hi - lo)  # always on the plateau


def test_noise_defect_is_markedly_noisier() -> None:
    rng = np.random.default_rng(7)
    ok = [_roughness(make_curve("ok", length=300, rng=rng)) for _ in range(50)]
    noisy = [_roughness(make_curve("noise", length=300, rng=rng)) for _ in range(50)]
    assert min(noisy) > 2 * max(ok)


def test_make_batch_shapes_and_labels() -> None:
    x, y = make_batch(64, length=250, rng=np.random.default_rng(3))
    assert x.shape == (64, 250)
    assert x.dtype == np.float32
    assert y.shape == (64,)
    assert y.dtype == np.int64
    assert y.min() >= 0
    assert y.max() < len(CURVE_KINDS)
    assert 0 < (y == 0).sum() < 64


def test_make_batch_defect_rate_and_determinism() -> None:
    _, all_ok = make_batch(50, length=100, rng=np.random.default_rng(0), defect_rate=0.0)
    assert (all_ok == 0).all()
    _, no_ok = make_batch(200, length=100, rng=np.random.default_rng(0), defect_rate=1.0)
    assert (no_ok != 0).all()
    assert set(no_ok.tolist()) == set(range(1, len(CURVE_KINDS)))
    a = make_batch(20, length=120, rng=np.random.default_rng(9))
    b = make_batch(20, length=120, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    empty, labels = make_batch(0, length=120, rng=np.random.default_rng(9))
    assert empty.shape == (0, 120)
    assert labels.shape == (0,)
    with pytest.raises(ValueError, match="defect_rate"):
        make_batch(1, length=100, rng=np.random.default_rng(0), defect_rate=1.5)


def test_resample_linear() -> None:
    x = np.array([0.0, 10.0, 20.0])
    np.testing.assert_allclose(resample(x, length=5), [0.0, 5.0, 10.0, 15.0, 20.0])
    np.testing.assert_allclose(resample(np.arange(5.0), length=3), [0.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 2)), length=4)
    with pytest.raises(ValueError, match="at least 2"):
        resample(np.zeros(1), length=4)


def test_preprocess_mixed_lengths() -> None:
    rng = np.random.default_rng(5)
    curves = [make_curve("ok", length=n, rng=rng) for n in (128, 200, 256, 400, 512)]
    out = preprocess(curves, length=256)
    assert out.shape == (5, 256)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1.0, atol=1e-4)
    # The curve already 256 long is only normalised.
    c = curves[2]
    np.testing.assert_allclose(out[2], (c - c.mean()) / c.std(), rtol=1e-5, atol=1e-5)
    # Resampling keeps the shape: first and last samples map to first and last.
    c = curves[4]
    z = (c - c.mean()) / c.std()
    assert out[4, 0] == pytest.approx(z[0], abs=0.05)
    assert out[4, -1] == pytest.approx(z[-1], abs=0.05)


def test_preprocess_array_equals_list_and_constant_curves() -> None:
    x, _ = make_batch(8, length=300, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(preprocess(x, length=256), preprocess(list(x), length=256))
    flat = preprocess(np.full((2, 100), 7.5), length=256)
    assert flat.shape == (2, 256)
    assert np.isfinite(flat).all()
    assert (flat == 0).all()
    assert preprocess([], length=256).shape == (0, 256)


def test_preprocess_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((2, 3, 4)), length=256)
    with pytest.raises(ValueError, match="at least 2"):
        preprocess([np.zeros(1)], length=256)
    with pytest.raises(ValueError, match="1-D"):
        preprocess([np.zeros((3, 3))], length=256)
