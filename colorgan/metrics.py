"""Colorization metrics on batches of images, vectorised in NumPy.

Every per-image function takes a batch shaped ``(B, H, W, C)`` and returns one value per image, shape
``(B,)``, so a caller can both average them and write them out image by image. RGB inputs are uint8
(or any numbers on the 0..255 scale); ab inputs are CIE Lab a and b in their own units (about -110..110),
as :func:`colorgan.color.rgb_to_lab` gives them.

The conventions follow the published ones so numbers compare:

* PSNR and SSIM equal ``skimage.metrics`` with ``data_range=255`` (and ``channel_axis=-1`` for SSIM).
* AuC is Zhang et al. 2016 ("Colorful Image Colorization", section 3.1): the share of pixels whose ab
  error is within a threshold, swept from 0 to 150, integrated and normalised to [0, 1].
* Colourfulness is Hasler and Suesstrunk 2003, "Measuring colourfulness in natural images", eq. (3).
* FID is Heusel et al. 2017: the Frechet distance between Gaussians fitted to Inception features.
"""
import numpy as np

# SSIM constants, skimage's defaults (which are Wang et al. 2004's K1, K2).
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

AUC_MAX_THRESHOLD = 150


def _as_float64(images):
    return np.asarray(images, dtype=np.float64)


def _pixels(images):
    """A batch of images as float64, refused if its images have no pixels: a mean over none is NaN."""
    images = _as_float64(images)
    if images.ndim < 2 or not np.prod(images.shape[1:]):
        raise ValueError(f"expected a batch of images with at least one pixel each, got shape {images.shape}")
    return images


def psnr(real, predicted, data_range=255.0):
    """Peak signal-to-noise ratio in dB per image; ``inf`` where an image is reproduced exactly.

    The mean squared error runs over all pixels and channels, as in
    ``skimage.metrics.peak_signal_noise_ratio``.
    """
    error = _pixels(real) - _pixels(predicted)
    mse = np.mean(error ** 2, axis=tuple(range(1, error.ndim)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / mse)


def _window_means(x, size):
    """Mean over every ``size`` x ``size`` window wholly inside the image, on the last two axes."""
    # A running sum turns each window sum into one difference: O(pixels), whatever the window size.
    summed = np.cumsum(x, axis=-2)
    summed = np.concatenate([np.zeros_like(summed[..., :1, :]), summed], axis=-2)
    x = summed[..., size:, :] - summed[..., :-size, :]
    summed = np.cumsum(x, axis=-1)
    summed = np.concatenate([np.zeros_like(summed[..., :1]), summed], axis=-1)
    return (summed[..., size:] - summed[..., :-size]) / size ** 2


def ssim(real, predicted, data_range=255.0):
    """Mean structural similarity per image, equal to skimage's default SSIM of RGB images.

    That is ``skimage.metrics.structural_similarity(real, predicted, channel_axis=-1, data_range=255)``:
    a 7x7 *uniform* window (not Wang et al.'s Gaussian), sample covariances (normalised by 48, not 49),
    K1 = 0.01, K2 = 0.03, each channel scored on its own and the channels averaged. skimage filters with
    reflected borders and then crops 3 pixels from every side, which leaves exactly the windows that lie
    wholly inside the image; those are the only ones computed here.
    """
    real, predicted = np.asarray(real), np.asarray(predicted)
    if real.shape != predicted.shape:
        raise ValueError(f"images differ in shape: {real.shape} and {predicted.shape}")
    if min(real.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {real.shape[1:3]}")
    # Channels first, so that the window sums run along contiguous memory.
    x = np.ascontiguousarray(np.moveaxis(real, -1, 1), dtype=np.float64)
    y = np.ascontiguousarray(np.moveaxis(predicted, -1, 1), dtype=np.float64)
    mean_x, mean_y = _window_means(x, SSIM_WINDOW), _window_means(y, SSIM_WINDOW)
    sample_correction = SSIM_WINDOW ** 2 / (SSIM_WINDOW ** 2 - 1)
    var_x = sample_correction * (_window_means(x * x, SSIM_WINDOW) - mean_x ** 2)
    var_y = sample_correction * (_window_means(y * y, SSIM_WINDOW) - mean_y ** 2)
    cov_xy = sample_correction * (_window_means(x * y, SSIM_WINDOW) - mean_x * mean_y)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
                / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))
    # Every channel has as many windows, so the mean of channel means is the plain mean.
    return ssim_map.mean(axis=(1, 2, 3))


def ab_mae(real_ab, predicted_ab):
    """Mean absolute error of a and b together, in Lab units, per image."""
    error = np.abs(_pixels(real_ab) - _pixels(predicted_ab))
    return error.mean(axis=tuple(range(1, error.ndim)))


def ab_error_curve(real_ab, predicted_ab, max_threshold=AUC_MAX_THRESHOLD):
    """Share of pixels whose Euclidean ab error is <= t, for t = 0, 1, ..., max_threshold: (B, max_threshold + 1)."""
    distance = np.linalg.norm(_pixels(real_ab) - _pixels(predicted_ab), axis=-1)
    distance = distance.reshape(distance.shape[0], int(np.prod(distance.shape[1:])))  # an empty batch too
    batch, pixels = distance.shape
    # For integer thresholds, d <= t exactly when ceil(d) <= t: a histogram of ceil(d) and its running
    # sum give the whole curve without a (pixels x thresholds) comparison. Bin max_threshold + 1 is "beyond".
    bins = np.minimum(np.ceil(distance), max_threshold + 1).astype(np.int64)
    bins += (max_threshold + 2) * np.arange(batch)[:, None]  # one block of bins per image
    counts = np.bincount(bins.ravel(), minlength=batch * (max_threshold + 2))
    counts = counts.reshape(batch, max_threshold + 2)[:, :max_threshold + 1]
    return np.cumsum(counts, axis=1) / pixels


def ab_auc(real_ab, predicted_ab, max_threshold=AUC_MAX_THRESHOLD):
    """Area under the cumulative ab-error curve (Zhang et al. 2016) per image, in [0, 1]; 1 is perfect."""
    curve = ab_error_curve(real_ab, predicted_ab, max_threshold)
    return np.trapezoid(curve, dx=1.0, axis=1) / max_threshold


def colourfulness(rgb):
    """Hasler and Suesstrunk's colourfulness M per image, on the 0..255 scale (gray is 0, vivid is ~100).

    With rg = R - G and yb = (R + G)/2 - B over the pixels of an image:
    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2), population standard deviations.
    """
    rgb = _pixels(rgb)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    pixels = (rgb.shape[0], int(np.prod(rgb.shape[1:-1])))  # an empty batch too
    rg = (red - green).reshape(pixels)
    yb = (0.5 * (red + green) - blue).reshape(pixels)
    spread = np.sqrt(rg.var(axis=1) + yb.var(axis=1))
    centre = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * centre


def mean_finite(values):
    """(mean of the finite values or None if there are none, number of non-finite values left out).

    PSNR is infinite for an image reproduced exactly (a gray photo under the gray baseline, every photo
    under ``identity``); one such image would make the plain mean infinite, so they are counted instead.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    mean = float(values[finite].mean()) if finite.any() else None
    return mean, int((~finite).sum())


# --------------------------------------------------------------------------------------------------
# Frechet Inception Distance


def feature_statistics(features):
    """Mean and covariance (rows are samples) of a feature matrix, in float64."""
    features = _as_float64(features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need a (samples, features) matrix with at least 2 samples, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


class FeatureSet:
    """The features of a set that grows batch by batch, in bounded memory: the features themselves while
    there are at most ``keep`` (``fid``'s exact path on samples), then only their count, sum and sum of
    outer products (features^2 float64: 32 MB for Inception's 2048, whatever the number of photos; the
    features of 100,000 photos held as they are took 2.4 GB)."""

    def __init__(self, keep=2048):
        self.keep, self.batches, self.count, self.sum, self.outer = keep, [], 0, None, None

    def add(self, features):
        features = _as_float64(features)
        self.count += len(features)
        if self.sum is None and self.count <= self.keep:
            self.batches.append(features)
            return
        for batch in self.batches + [features]:
            if self.sum is None:
                self.sum, self.outer = np.zeros(batch.shape[1]), np.zeros((batch.shape[1], batch.shape[1]))
            self.sum += batch.sum(axis=0)
            self.outer += batch.T @ batch
        self.batches = []

    def __len__(self):
        return self.count

    def samples(self):
        """The features, while they are kept; else None."""
        return np.concatenate(self.batches) if self.sum is None and self.batches else None

    def statistics(self):
        """Mean and sample covariance, as feature_statistics gives them."""
        if self.sum is None:
            return feature_statistics(self.samples())
        mean = self.sum / self.count
        return mean, (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def fid_of_sets(set1, set2):
    """``fid`` of two FeatureSets: on the samples where both are kept, else on their statistics."""
    x1, x2 = set1.samples(), set2.samples()
    if x1 is not None and x2 is not None:
        return fid(x1, x2)
    if min(len(set1), len(set2)) < 2:
        raise ValueError(f"need at least 2 samples in each set, got {len(set1)} and {len(set2)}")
    return frechet_distance(*set1.statistics(), *set2.statistics())


def _psd_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mean1, cov1, mean2, cov2):
    """Frechet distance between N(mean1, cov1) and N(mean2, cov2):

    |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrt(cov1 cov2)).

    tr(sqrt(cov1 cov2)) equals tr(sqrt(S cov2 S)) with S = sqrt(cov1), and S cov2 S is symmetric positive
    semi-definite, so its eigenvalues are real and >= 0. That avoids scipy's general ``sqrtm`` of a
    non-symmetric product (and its complex round-off) and needs only NumPy.
    """
    mean1, mean2 = _as_float64(mean1), _as_float64(mean2)
    cov1, cov2 = _as_float64(cov1), _as_float64(cov2)
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    middle = 0.5 * (middle + middle.T)  # symmetric up to round-off; make it exactly so for eigvalsh
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    distance = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))  # a set against itself gives ~-1e-10 from round-off


def fid(features1, features2):
    """Frechet Inception Distance between two sets of Inception pool3 features, each (samples, 2048).

    With fewer samples than features (the usual case for an evaluation set of a few hundred photos)
    it works on the samples instead of 2048 x 2048 covariances: with A the centred samples scaled by
    1/sqrt(n - 1), each covariance is A^T A, and tr(sqrt(cov1 cov2)) is the sum of the singular values
    of A1 A2^T (n1 x n2), because that matrix times its transpose has the same non-zero eigenvalues as
    cov1 cov2. Same value, far less work, and exactly 0 and exactly symmetric where it should be.
    """
    x1, x2 = _as_float64(features1), _as_float64(features2)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1] or min(len(x1), len(x2)) < 2:
        raise ValueError(f"need two (samples >= 2, features) matrices, got {x1.shape} and {x2.shape}")
    if max(len(x1), len(x2)) > x1.shape[1]:
        return frechet_distance(*feature_statistics(x1), *feature_statistics(x2))
    mean1, mean2 = x1.mean(axis=0), x2.mean(axis=0)
    a1 = (x1 - mean1) / np.sqrt(len(x1) - 1)
    a2 = (x2 - mean2) / np.sqrt(len(x2) - 1)
    trace_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    distance = np.sum((mean1 - mean2) ** 2) + np.sum(a1 ** 2) + np.sum(a2 ** 2) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))
