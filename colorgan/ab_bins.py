"""Colour as classes (Zhang, Isola and Efros 2016, "Colorful Image Colorization"): the ab plane cut into
10x10 cells, the in-gamut cells as classes, soft-encoded targets, rebalancing weights from the colour
prior of the training photos, and the annealed mean that turns a distribution back into one colour.

    Q                 the cells of the ab grid that hold an sRGB colour at some lightness (262)
    Z = H^-1(ab)      soft encoding: the 5 nearest centres, Gaussian weights (sigma 5), summing to 1
    w ∝ ((1 - lam) p~ + lam / Q)^-1,  with E_p~[w] = 1     rebalancing (lam = 1/2, p~ the prior smoothed)
    H(Z) = E[f_T(Z)],  f_T(z) ∝ exp(log z / T)            annealed mean (T = 0.38)

A regression on ab (L1) predicts the mean of the colours a gray pixel could have, which is brownish-gray
for most of them; a distribution over classes keeps the vivid modes, and the weights stop the common
desaturated classes from dominating the loss. Plain numpy for the grid and the prior, TF for the rest.
"""
import functools

import numpy as np
import tensorflow as tf

from colorgan import color

GRID = 10.0          # cell size in ab units
NEIGHBOURS = 5       # soft encoding: this many nearest centres ...
SIGMA = 5.0          # ... weighted by a Gaussian of this width
PRIOR_SIGMA = 5.0    # smoothing of the empirical prior, in ab units
MIX = 0.5            # lam: weight of the uniform distribution in the rebalancing
TEMPERATURE = 0.38   # annealed mean: 1 is the mean, 0 the mode


def _in_srgb_gamut(lab):
    """(N, 3) Lab -> (N,) bool: the colour is an sRGB colour (linear RGB inside [0, 1]), no clipping.
    ``color.lab_to_linear`` clamps an impossible negative z to 0, so that case is refused here."""
    with tf.init_scope():  # numbers, not graph tensors, even when first asked for inside a tf.function
        linear = color.lab_to_linear(lab).numpy()
    possible = (lab[:, 0] + 16.0) / 116.0 - lab[:, 2] / 200.0 >= 0.0
    return np.all((linear >= 0.0) & (linear <= 1.0), axis=1) & possible


@functools.lru_cache(maxsize=None)
def centres(grid=GRID):
    """(Q, 2) float32: the centres of the ab cells that hold an sRGB colour at some L in 1..99 (262 cells;
    Zhang et al. kept the 313 that ImageNet's photos reach, a few of them outside sRGB)."""
    values = np.arange(-110.0, 110.0 + grid / 2, grid)
    a, b = np.meshgrid(values, values, indexing="ij")
    ab = np.stack([a.ravel(), b.ravel()], axis=1)
    lightness = np.arange(1.0, 100.0, 1.0)
    offsets = np.linspace(-grid / 2, grid / 2, 5)  # a cell counts when any part of it is in the gamut
    keep = np.zeros(len(ab), bool)
    for da in offsets:
        for db in offsets:
            points = np.tile(ab + (da, db), (len(lightness), 1))
            lab = np.concatenate([np.repeat(lightness, len(ab))[:, None], points], axis=1)
            keep |= _in_srgb_gamut(lab).reshape(len(lightness), len(ab)).any(axis=0)
    return ab[keep].astype(np.float32)


def count_classes(grid=GRID):
    return len(centres(grid))


def soft_encode(ab, grid=GRID):
    """ab in ab units (..., 2) -> (indices, weights), each (..., 5): the nearest centres and their
    Gaussian weights, which sum to 1. The dense target Z is zero elsewhere."""
    ab = tf.cast(ab, tf.float32)
    c = tf.constant(centres(grid))
    # |ab - c|^2 without building (..., Q, 2): |ab|^2 - 2 ab.c + |c|^2
    d2 = (tf.reduce_sum(tf.square(ab), -1, keepdims=True) - 2.0 * tf.einsum("...i,qi->...q", ab, c)
          + tf.reduce_sum(tf.square(c), -1))
    neg_d2, indices = tf.math.top_k(-d2, k=NEIGHBOURS)
    weights = tf.nn.softmax(neg_d2 / (2.0 * SIGMA ** 2), axis=-1)  # exp(-d^2 / 2 sigma^2), normalised
    return indices, weights


@functools.lru_cache(maxsize=None)
def _class_of_cell(grid=GRID):
    """(n, n) int32: for every cell of the ab grid, the class whose centre is nearest to the cell's centre
    (the cell itself where it is a class)."""
    values = np.arange(-110.0, 110.0 + grid / 2, grid)
    a, b = np.meshgrid(values, values, indexing="ij")
    cells = np.stack([a.ravel(), b.ravel()], axis=1)
    d2 = np.sum((cells[:, None] - centres(grid)[None]) ** 2, axis=-1)
    return d2.argmin(axis=1).astype(np.int32).reshape(len(values), len(values))


def nearest(ab, grid=GRID):
    """ab in ab units (..., 2) -> (...,) int32: the class of each pixel, its nearest centre. The grid's
    cells are the Voronoi cells of its centres, so that is the class of the cell the pixel lies in; a
    lookup, not a distance to all 262 centres, because the L1 rebalancing asks it of every training pixel.
    (In a cell that is no class, which no sRGB colour reaches, it is the class nearest that cell's centre.)"""
    table = _class_of_cell(grid)
    cell = tf.cast(tf.round(tf.cast(ab, tf.float32) / grid), tf.int32) + table.shape[0] // 2
    return tf.gather_nd(tf.constant(table), tf.clip_by_value(cell, 0, table.shape[0] - 1))


def empirical_prior(class_counts, grid=GRID, sigma=PRIOR_SIGMA):
    """Pixel counts per class -> p~, the prior smoothed by a Gaussian over the ab plane, summing to 1."""
    counts = np.asarray(class_counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("the colour prior needs at least one coloured pixel")
    c = centres(grid).astype(np.float64)
    kernel = np.exp(-np.sum((c[:, None] - c[None]) ** 2, -1) / (2.0 * sigma ** 2))
    smoothed = kernel @ (counts / counts.sum())
    return smoothed / smoothed.sum()


def rebalancing_weights(prior, mix=MIX):
    """w ∝ ((1 - mix) p + mix / Q)^-1, scaled so that the expected weight under p is 1."""
    prior = np.asarray(prior, np.float64)
    w = 1.0 / ((1.0 - mix) * prior + mix / len(prior))
    return (w / np.sum(prior * w)).astype(np.float32)


def annealed_mean(logits, temperature=TEMPERATURE, grid=GRID):
    """(..., Q) class logits -> (..., 2) ab in ab units. softmax(logits / T) is f_T of the distribution
    softmax(logits), since log z differs from the logits by a constant per pixel."""
    p = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
    c = tf.constant(centres(grid))
    return tf.stack([tf.reduce_sum(p * c[:, 0], -1), tf.reduce_sum(p * c[:, 1], -1)], axis=-1)
