"""Steady colour for films, in NumPy on model-resolution frames (normalised L in [-1, 1]).

Coloured frame by frame, a film flickers: a small change in a frame changes the model's guess.
`TemporalFilter` follows the camera (phase correlation, refined block by block), carries the colour so
far along that motion and blends it with the new guess, less where the lightness shows the warp is wrong
(a moving object, a reveal) and not at all after a cut.
"""
import dataclasses

import numpy as np

from colorgan.errors import ColorganError

def phase_correlation(previous, current):
    """Whole-pixel (dy, dx) such that current(y, x) ~ previous(y - dy, x - dx)."""
    window = np.outer(np.hanning(current.shape[0]), np.hanning(current.shape[1]))  # edges are not motion
    cross = np.fft.fft2(current * window) * np.conj(np.fft.fft2(previous * window))
    peak = np.unravel_index(np.argmax(np.real(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))), cross.shape)
    # The correlation is circular: a peak past the middle is a negative shift.
    return np.array([(p + n // 2) % n - n // 2 for p, n in zip(peak, cross.shape)], np.float32)


def resample(image, sy, sx):
    """Bilinear samples of ``image`` (H, W[, C]) at float coordinates (sy, sx), clamped to the frame."""
    height, width = image.shape[:2]
    sy, sx = np.clip(sy, 0, height - 1), np.clip(sx, 0, width - 1)
    y0, x0 = np.minimum(sy.astype(np.int32), max(height - 2, 0)), np.minimum(sx.astype(np.int32), max(width - 2, 0))
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    fy, fx = (sy - y0, sx - x0) if image.ndim == 2 else ((sy - y0)[..., None], (sx - x0)[..., None])
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    return top * (1 - fy) + (image[y1, x0] * (1 - fx) + image[y1, x1] * fx) * fy


def warp(image, motion, region=np.s_[:, :]):
    """``image`` moved by ``motion`` ((2,) or a field (H, W, 2)), on ``region`` of the frame, and a mask of
    the pixels whose source lies inside the frame."""
    height, width = image.shape[:2]
    rows, cols = (np.arange(*s.indices(n), dtype=np.float32) for s, n in zip(region, (height, width)))
    ys, xs = np.meshgrid(rows, cols, indexing="ij")
    motion = np.asarray(motion, np.float32)
    motion = motion[region] if motion.ndim == 3 else np.broadcast_to(motion, ys.shape + (2,))
    sy, sx = ys - motion[..., 0], xs - motion[..., 1]
    return resample(image, sy, sx), (sy >= 0) & (sy <= height - 1) & (sx >= 0) & (sx <= width - 1)


def refine_shift(previous, current, shift, region=np.s_[:, :], iterations=2):
    """Lucas-Kanade steps from a whole-pixel translation to a sub-pixel one, fitted on ``region``."""
    for _ in range(iterations):
        moved, inside = warp(previous, shift, region)
        gradients = np.stack([g[inside] for g in np.gradient(moved)], axis=-1)
        normal = gradients.T @ gradients
        if inside.sum() < 16 or np.linalg.cond(normal) > 1e4:  # flat or one-dimensional texture: stop here
            break
        # current ~ moved - gradient . step, so the step solves gradient . step = moved - current.
        shift = shift + np.linalg.solve(normal, gradients.T @ (moved - current[region])[inside]).astype(np.float32)
    return shift


def misfit(moved, inside, current):
    return float(np.abs(moved - current)[inside].mean()) if inside.any() else np.inf


def estimate_motion(previous, current, grid=4):
    """A smooth motion field (H, W, 2) from ``previous`` to ``current``: the camera's translation, replaced
    in each of grid x grid blocks by the block's own where that fits clearly better. So coarse a grid
    follows zooms and parallax without chasing every small moving object."""
    height, width = current.shape
    overall = refine_shift(previous, current, phase_correlation(previous, current))
    moved, inside = warp(previous, overall)
    bh, bw = height // grid, width // grid
    blocks = np.empty((grid, grid, 2), np.float32)
    for i in range(grid):
        for j in range(grid):
            region = np.s_[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            blocks[i, j] = overall
            local = phase_correlation(previous[region], current[region])
            if np.any(np.abs(local - overall) > min(bh, bw) / 4):  # too far to trust from one small block
                continue
            local = refine_shift(previous, current, local, region)
            if misfit(*warp(previous, local, region), current[region]) < 0.8 * misfit(
                    moved[region], inside[region], current[region]):
                blocks[i, j] = local
    # Bilinear between block centres: a smooth field, so the warp has no seams.
    cy = (np.arange(height, dtype=np.float32) + 0.5) / bh - 0.5
    cx = (np.arange(width, dtype=np.float32) + 0.5) / bw - 0.5
    return resample(blocks, *np.meshgrid(cy, cx, indexing="ij"))


def histogram_distance(a, b, bins=64):
    """Earth mover's distance between two frames' lightness histograms, in normalised L. Unlike a bin by
    bin distance it hardly moves when the exposure flickers, but a shot with other lights and darks moves it."""
    ca, cb = (np.cumsum(np.histogram(x, bins=bins, range=(-1.0, 1.0))[0]) / x.size for x in (a, b))
    return float(np.abs(ca - cb).sum() * 2.0 / bins)


def box_blur(image):
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    return sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0


@dataclasses.dataclass
class TemporalFilter:
    """Recursive, motion-compensated smoothing of the predicted ab, frame by frame, reset at cuts.

    out = guess + strength * trust * (carried - guess): `carried` is the previous output moved along the
    estimated motion; `trust` in [0, 1] falls as the moved lightness disagrees with the frame's own, by
    `tolerance` (normalised L: 0.1 is 5 L* units). A cut is a jump in the lightness histogram or a frame
    that the previous one, however moved, hardly matches.
    """
    strength: float = 0.8       # 0: frame by frame; near 1: colour changes only slowly within a shot
    tolerance: float = 0.1
    cut_threshold: float = 0.1  # histogram distance of a new shot (normalised L: 5 L* units)
    min_match: float = 0.35     # mean trust below which a frame starts a new shot
    grid: int = 4

    def __post_init__(self):
        if not 0.0 <= self.strength < 1.0:
            raise ColorganError(f"temporal strength must be in [0, 1), got {self.strength}")
        self._l = self._ab = None

    def __call__(self, l, ab):
        """Normalised L (S, S) and predicted ab (S, S, 2) of the next frame -> (steadied ab, is_cut)."""
        l, ab = np.asarray(l, np.float32), np.asarray(ab, np.float32)
        previous_l, previous_ab, self._l, self._ab = self._l, self._ab, l, ab
        if previous_l is None or histogram_distance(previous_l, l) > self.cut_threshold:
            return ab, previous_l is not None
        motion = estimate_motion(previous_l, l, self.grid)
        moved_l, inside = warp(previous_l, motion)
        # The mean difference is exposure flicker, not a misfit; the blur forgives sub-pixel misregistered
        # edges but not another object.
        difference = moved_l - l
        difference -= difference[inside].mean() if inside.any() else 0.0
        trust = np.where(inside, np.exp(-(box_blur(np.abs(difference)) / self.tolerance) ** 2), 0.0)
        if trust.mean() < self.min_match:
            return ab, True
        self._ab = ab + (self.strength * trust.astype(np.float32))[..., None] * (warp(previous_ab, motion)[0] - ab)
        return self._ab, False


