"""The colour prior of the training photos, for Zhang et al.'s class rebalancing (ab_bins)."""
import numpy as np
import tensorflow as tf
from absl import logging

from colorgan import ab_bins, color, data

PRIOR_SIZE = 64  # photos are scored at this size: the prior is a histogram, detail does not move it


def class_counts(source, photos, *, val_share=0.05, download=False, data_dir=None, min_colourfulness=0.0):
    """Pixels per ab class over the first ``photos`` colour photos of the training split (a fixed set:
    the same on every run and every worker), resized and centre-cropped to 64x64."""
    ds = data.make_dataset(source, "train", PRIOR_SIZE, 64, training=False, skip_gray=True,
                           drop_remainder=False, val_share=val_share, download=download, data_dir=data_dir,
                           min_colourfulness=min_colourfulness).unbatch().take(photos).batch(64)
    counts = np.zeros(ab_bins.count_classes(), np.int64)
    seen = 0
    for _, ab in ds:
        classes = ab_bins.nearest(tf.cast(ab, tf.float32) * color.AB_SCALE)
        counts += tf.math.bincount(tf.reshape(classes, [-1]), minlength=len(counts)).numpy()[:len(counts)]
        seen += int(ab.shape[0])
    return counts, seen


def colour_prior(cfg):
    """(Q,) the smoothed colour prior of this run's training photos, from which each rebalanced loss
    takes its weights (``ab_bins.rebalancing_weights`` with its own lambda)."""
    counts, seen = class_counts(cfg.data, cfg.class_prior_photos, val_share=cfg.val_share, download=cfg.download,
                                data_dir=cfg.data_dir or None, min_colourfulness=cfg.min_colourfulness)
    logging.info("colour prior from %d photos: %d of %d classes seen", seen, int((counts > 0).sum()), len(counts))
    return ab_bins.empirical_prior(counts)
