"""Metrics against their references: skimage for PSNR and SSIM, the formulas written out for the rest."""
import numpy as np
import pytest
import scipy.linalg
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorgan import metrics
from conftest import read_rgb


@pytest.fixture(scope="module")
def photo_pairs(sample_photos):
    """Real photos (non-square, 97 x 130) with degraded copies: noise, blur, a colour cast, a gray copy."""
    rng = np.random.default_rng(0)
    real = np.stack([np.asarray(Image.fromarray(read_rgb(p)).resize((130, 97), Image.BICUBIC))
                     for p in sample_photos[:4]])
    noisy = np.clip(real + rng.normal(0, 12, real.shape), 0, 255).astype(np.uint8)
    blurred = np.stack([np.asarray(Image.fromarray(r).resize((32, 24)).resize((130, 97))) for r in real])
    cast = np.clip(real.astype(int) + [25, 0, -25], 0, 255).astype(np.uint8)
    gray = np.repeat(real.mean(axis=-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
    return real, [noisy, blurred, cast, gray]


def test_psnr_equals_skimage(photo_pairs):
    real, degraded = photo_pairs
    for output in degraded:
        expected = [peak_signal_noise_ratio(r, o, data_range=255) for r, o in zip(real, output)]
        np.testing.assert_allclose(metrics.psnr(real, output), expected, rtol=0, atol=1e-3)


def test_psnr_is_infinite_for_an_exact_copy_and_left_out_of_the_mean(photo_pairs):
    real, (noisy, *_) = photo_pairs
    values = metrics.psnr(real, np.concatenate([real[:1], noisy[1:]]))
    assert np.isinf(values[0]) and np.isfinite(values[1:]).all()
    mean, infinite = metrics.mean_finite(values)
    assert infinite == 1 and mean == pytest.approx(values[1:].mean())
    assert metrics.mean_finite([np.inf, np.inf]) == (None, 2)


def test_ssim_equals_skimage_default_for_rgb(photo_pairs):
    real, degraded = photo_pairs
    for output in degraded + [real]:
        expected = [structural_similarity(r, o, channel_axis=-1, data_range=255) for r, o in zip(real, output)]
        np.testing.assert_allclose(metrics.ssim(real, output), expected, rtol=0, atol=1e-3)
        # It is the same computation, so it agrees far closer than the 1e-3 asked for.
        np.testing.assert_allclose(metrics.ssim(real, output), expected, rtol=0, atol=1e-9)


def test_ssim_of_tiny_and_flat_images_equals_skimage():
    flat = np.full((1, 7, 9, 3), 200, np.uint8)
    ramp = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(1, 7, 9, 3)
    for a, b in [(flat, ramp), (ramp, flat), (flat, flat)]:
        expected = structural_similarity(a[0], b[0], channel_axis=-1, data_range=255)
        assert metrics.ssim(a, b)[0] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="at least 7x7"):
        metrics.ssim(flat[:, :6], flat[:, :6])


def numpy_colourfulness(image):
    """Hasler and Suesstrunk 2003, eq. (3), written out for one image."""
    r, g, b = (image[..., c].astype(np.float64).ravel() for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2) + 0.3 * np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2)


def test_colourfulness_matches_the_formula(photo_pairs):
    real, degraded = photo_pairs
    for images in [real] + degraded:
        np.testing.assert_allclose(metrics.colourfulness(images), [numpy_colourfulness(i) for i in images],
                                   rtol=1e-12)
    assert np.all(metrics.colourfulness(degraded[3]) == 0.0)  # R = G = B
    assert np.all(metrics.colourfulness(real) > 10.0)


def test_ab_auc_is_the_area_under_the_thresholded_share_of_pixels():
    rng = np.random.default_rng(1)
    real_ab = rng.uniform(-80, 80, (3, 20, 30, 2))
    predicted_ab = real_ab + rng.normal(0, 40, real_ab.shape)
    predicted_ab[0, :5] = real_ab[0, :5]           # exact pixels count from threshold 0
    predicted_ab[1, :, :4] = real_ab[1, :, :4] + 3  # distance sqrt(18), between thresholds 4 and 5
    distance = np.linalg.norm(real_ab - predicted_ab, axis=-1).reshape(3, -1)
    thresholds = np.arange(151)
    curve = np.stack([(distance <= t).mean(axis=1) for t in thresholds], axis=1)
    np.testing.assert_allclose(metrics.ab_error_curve(real_ab, predicted_ab), curve, atol=1e-12)
    expected = np.array([np.trapezoid(c, thresholds) / 150 for c in curve])
    np.testing.assert_allclose(metrics.ab_auc(real_ab, predicted_ab), expected, atol=1e-12)
    np.testing.assert_allclose(metrics.ab_auc(real_ab, real_ab), 1.0)
    assert metrics.ab_auc(real_ab, real_ab + 200.0).max() == 0.0


def test_ab_mae():
    real_ab = np.zeros((2, 4, 4, 2))
    predicted_ab = real_ab.copy()
    predicted_ab[0, ..., 0] = 6.0
    predicted_ab[1, :2, :, 1] = -10.0
    np.testing.assert_allclose(metrics.ab_mae(real_ab, predicted_ab), [3.0, 2.5])


def scipy_frechet(mean1, cov1, mean2, cov2):
    """The reference implementation of TTUR's fid.py and pytorch-fid."""
    covmean, _ = scipy.linalg.sqrtm(cov1 @ cov2, disp=False)
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * covmean.real))


@pytest.mark.parametrize("samples", [(6, 9), (80, 50), (300, 200)])
def test_fid_equals_the_scipy_formula_whether_samples_or_features_are_fewer(samples):
    rng = np.random.default_rng(2)
    dims = 128  # (300, 200) has more samples than features: the covariance path
    x1 = rng.normal(size=(samples[0], dims)) @ rng.normal(size=(dims, dims))
    x2 = rng.normal(0.5, 1.0, size=(samples[1], dims)) @ rng.normal(size=(dims, dims))
    expected = scipy_frechet(*metrics.feature_statistics(x1), *metrics.feature_statistics(x2))
    assert metrics.fid(x1, x2) == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet_distance(*metrics.feature_statistics(x1), *metrics.feature_statistics(x2)) == \
        pytest.approx(expected, rel=1e-6)
    assert metrics.fid(x2, x1) == pytest.approx(metrics.fid(x1, x2), rel=1e-9)
    assert metrics.fid(x1, x1) == pytest.approx(0.0, abs=1e-6 * expected)


def test_fid_rejects_too_few_samples():
    with pytest.raises(ValueError, match="samples"):
        metrics.fid(np.zeros((1, 8)), np.zeros((5, 8)))
