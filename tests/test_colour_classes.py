"""Zhang et al.'s colour classes: the in-gamut ab cells, soft encoding, rebalancing weights from the prior,
the annealed mean, the class-rebalanced loss, the class head, and a tiny run that trains it."""
import warnings

import numpy as np
import pytest
import tensorflow as tf
from skimage import color as skcolor

from colorgan import ab_bins, losses, models, saving, training
from colorgan.errors import ColorganError
from tests.test_training import run_logging_losses, tiny_config

Q = ab_bins.count_classes()


def test_classes_are_the_grid_cells_that_hold_srgb_colours():
    c = ab_bins.centres()
    assert c.shape == (262, 2) and np.all(c % 10 == 0)
    assert [0, 0] in c.tolist() and [-110, -110] not in c.tolist() and [100, -110] not in c.tolist()
    # Independent check with skimage: a kept cell holds a colour that survives Lab -> sRGB -> Lab (no clipping).
    rng = np.random.default_rng(0)
    for a, b in c[rng.choice(len(c), 25, replace=False)]:
        offsets = np.stack(np.meshgrid(np.linspace(-5, 5, 5), np.linspace(-5, 5, 5)), -1).reshape(-1, 2)
        lab = np.array([[L, a + da, b + db] for L in range(1, 100) for da, db in offsets], np.float64)
        with warnings.catch_warnings():  # skimage warns of the impossible colours it clips
            warnings.simplefilter("ignore")
            back = skcolor.rgb2lab(np.clip(skcolor.lab2rgb(lab[None]), 0, 1))[0]
        assert np.min(np.abs(back - lab).max(axis=1)) < 0.5, (a, b)


def brute_force_soft_encoding(ab):
    """(N, 2) -> dense (N, Q) targets: the 5 nearest centres, Gaussian weights (sigma 5), normalised."""
    d2 = ((ab[:, None, :] - ab_bins.centres()[None].astype(np.float64)) ** 2).sum(-1)
    dense = np.zeros_like(d2)
    for i, row in enumerate(d2):
        near = np.argsort(row)[:5]
        w = np.exp(-row[near] / (2 * 5.0 ** 2))
        dense[i, near] = w / w.sum()
    return dense


def test_soft_encoding_matches_a_brute_force_reference():
    ab = np.random.default_rng(1).uniform(-60, 60, (50, 2))
    indices, weights = ab_bins.soft_encode(tf.constant(ab, tf.float32))
    dense = np.zeros((50, Q))
    np.put_along_axis(dense, indices.numpy(), weights.numpy(), axis=1)
    np.testing.assert_allclose(dense, brute_force_soft_encoding(ab), atol=1e-5)
    # A pixel on a centre is that class.
    centre = ab_bins.centres()[17]
    assert int(ab_bins.nearest(tf.constant(centre[None]))[0]) == 17


def test_the_nearest_class_of_an_srgb_colour_is_its_nearest_centre():
    # Independent reference: skimage's Lab of random sRGB colours, and the distance to every centre.
    rgb = np.random.default_rng(6).random((20000, 1, 3))
    ab = skcolor.rgb2lab(rgb)[:, 0, 1:]
    brute = ((ab[:, None] - ab_bins.centres()[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(ab_bins.nearest(tf.constant(ab, tf.float32)).numpy(), brute)
    # Out of range, a pixel still gets a class (the edge cell's), never an index error.
    assert 0 <= int(ab_bins.nearest(tf.constant([[500.0, -500.0]]))[0]) < Q


def test_the_classes_can_first_be_asked_for_inside_a_tf_function():
    ab_bins.centres.cache_clear()
    ab_bins._class_of_cell.cache_clear()
    classes = tf.function(lambda ab: ab_bins.nearest(ab))(tf.constant([[0.0, 0.0]]))
    assert ab_bins.centres()[int(classes[0])].tolist() == [0.0, 0.0]


def test_rebalancing_weights_follow_the_prior():
    prior = np.random.default_rng(2).dirichlet(np.ones(Q) * 0.3)
    w = ab_bins.rebalancing_weights(prior, mix=0.5)
    order = np.argsort(prior)
    assert np.all(np.diff(w[order]) <= 1e-6)  # rarer colours weigh more
    assert np.sum(prior * w) == pytest.approx(1.0, rel=1e-5)  # the expected weight is 1
    np.testing.assert_allclose(w, (1 / (0.5 * prior + 0.5 / Q)) / np.sum(prior / (0.5 * prior + 0.5 / Q)), rtol=1e-5)
    np.testing.assert_allclose(ab_bins.rebalancing_weights(prior, mix=1.0), np.ones(Q), rtol=1e-6)  # no rebalancing
    inverse = ab_bins.rebalancing_weights(prior, mix=0.0)
    np.testing.assert_allclose(inverse * prior, np.full(Q, 1.0 / Q), rtol=1e-4)  # w = 1 / (Q p): flat in total


def test_the_empirical_prior_is_the_counts_smoothed_over_the_ab_plane():
    counts = np.zeros(Q)
    counts[ab_bins.centres().tolist().index([20, 30])] = 1000
    prior = ab_bins.empirical_prior(counts)
    assert prior.sum() == pytest.approx(1.0)
    c = ab_bins.centres()
    d = np.hypot(c[:, 0] - 20, c[:, 1] - 30)
    assert np.argmax(prior) == np.argmin(d)
    np.testing.assert_allclose(prior[d == 10] / prior.max(), np.exp(-100 / 50), rtol=1e-4)  # sigma 5
    with pytest.raises(ValueError):
        ab_bins.empirical_prior(np.zeros(Q))


def test_annealed_mean_of_a_one_hot_distribution_is_its_bin_centre():
    logits = np.full((3, Q), -30.0, np.float32)
    picks = [0, 100, Q - 1]
    logits[np.arange(3), picks] = 30.0
    np.testing.assert_allclose(ab_bins.annealed_mean(tf.constant(logits)), ab_bins.centres()[picks], atol=1e-4)
    # Uniform logits: the mean of the centres; and the Keras layer returns model units (ab / 110).
    np.testing.assert_allclose(ab_bins.annealed_mean(tf.zeros([1, Q]))[0], ab_bins.centres().mean(0), atol=1e-4)
    layer = models.blocks.AnnealedMean()
    np.testing.assert_allclose(layer(tf.constant(logits)), ab_bins.centres()[picks] / 110.0, atol=1e-6)


def test_annealing_sharpens_toward_the_mode():
    logits = np.zeros((1, Q), np.float32)
    logits[0, 5], logits[0, 200] = 2.0, 1.5
    c = ab_bins.centres()
    at = lambda t: ab_bins.annealed_mean(tf.constant(logits), temperature=t).numpy()[0]
    # Lower temperature moves the answer from the mean of all classes toward the likeliest one.
    assert np.linalg.norm(at(0.38) - c[5]) < np.linalg.norm(at(1.0) - c[5])
    np.testing.assert_allclose(at(0.01), c[5], atol=1e-3)


def test_rebalanced_cross_entropy_on_known_tensors():
    rng = np.random.default_rng(3)
    ab = rng.uniform(-0.5, 0.5, (2, 3, 3, 2)).astype(np.float32)         # model units
    logits = rng.normal(size=(2, 3, 3, Q)).astype(np.float32)
    weights = rng.uniform(0.5, 3.0, Q).astype(np.float32)
    got = losses.rebalanced_cross_entropy(tf.constant(logits), tf.constant(ab), tf.constant(weights)).numpy()

    z = brute_force_soft_encoding(ab.reshape(-1, 2).astype(np.float64) * 110.0)
    flat = logits.reshape(-1, Q).astype(np.float64)
    log_p = flat - np.log(np.exp(flat).sum(1, keepdims=True))
    per_pixel = -(z * log_p).sum(1) * weights[np.argmax(z, 1)]
    np.testing.assert_allclose(got, per_pixel.reshape(2, 9).mean(1), rtol=1e-4)
    # The logits of the soft target itself score lower than any other logits tried.
    best = losses.rebalanced_cross_entropy(tf.constant(np.log(z + 1e-9).reshape(2, 3, 3, Q), tf.float32),
                                           tf.constant(ab), tf.constant(weights)).numpy()
    assert np.all(best < got)


def test_rebalanced_l1_on_known_tensors():
    rng = np.random.default_rng(7)
    c = ab_bins.centres()
    picks = rng.choice(Q, (2, 4, 4))
    real = (c[picks] / 110.0).astype(np.float32)                     # every pixel on a class centre
    fake = rng.uniform(-0.5, 0.5, real.shape).astype(np.float32)
    weights = rng.uniform(0.2, 3.0, Q).astype(np.float32)
    got = losses.rebalanced_l1(tf.constant(fake), tf.constant(real), tf.constant(weights)).numpy()
    want = (weights[picks][..., None] * np.abs(fake - real)).reshape(2, -1).mean(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Weights of 1 (lambda = 1) are plain L1.
    np.testing.assert_allclose(losses.rebalanced_l1(tf.constant(fake), tf.constant(real), tf.ones([Q])),
                               losses.l1(tf.constant(fake), tf.constant(real)), rtol=1e-6)


def test_rebalanced_l1_moves_the_best_colour_from_gray_to_the_vivid_ones():
    """Six gray pixels, two orange and two yellow-orange: the best single colour under plain L1 is the
    median, gray; with the weights of their own prior (lambda 1/2) the two rarer vivid colours together
    outweigh gray, and the best colour lies between them."""
    colours = np.array([[0.0, 0.0]] * 6 + [[30.0, 60.0]] * 2 + [[20.0, 50.0]] * 2, np.float32)
    c = ab_bins.centres().tolist()
    counts = np.zeros(Q)
    for colour in colours:
        counts[c.index(colour.tolist())] += 1
    weights = tf.constant(ab_bins.rebalancing_weights(ab_bins.empirical_prior(counts), mix=0.5))
    real = tf.constant(colours.reshape(1, 10, 1, 2) / 110.0)
    candidates = [(a, b) for a in range(0, 41, 5) for b in range(0, 71, 5)]

    def best(loss):
        scores = [float(loss(tf.fill([1, 10, 1, 2], 0.0) + np.array(x, np.float32) / 110.0, real)[0]) for x in candidates]
        return candidates[int(np.argmin(scores))]

    assert best(losses.l1) == (0, 0)
    a, b = best(lambda fake, real: losses.rebalanced_l1(fake, real, weights))
    assert 20 <= a <= 30 and 50 <= b <= 60


def test_a_head_below_full_resolution_is_scored_on_the_photos_mean_colour():
    ab = np.zeros((1, 4, 4, 2), np.float32)
    ab[0, :2, :2] = [0.2, -0.1]
    logits = np.random.default_rng(4).normal(size=(1, 2, 2, Q)).astype(np.float32)
    w = np.ones(Q, np.float32)
    got = losses.rebalanced_cross_entropy(tf.constant(logits), tf.constant(ab), tf.constant(w))
    pooled = ab.reshape(1, 2, 2, 2, 2, 2).mean(axis=(2, 4))
    want = losses.rebalanced_cross_entropy(tf.constant(logits), tf.constant(pooled), tf.constant(w))
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name,options", [("unet", dict(base_filters=8, depth=5)), ("resunet", dict(width=8, depth=4)),
                                          ("backbone:efficientnet_lite0", dict(encoder_weights="none"))])
def test_every_generator_offers_the_class_head_and_it_round_trips(tmp_path, name, options):
    g = models.build_generator(name, 32, head="classes", **options)
    assert g.get_layer("ab_logits").output.shape[-1] == Q
    l = tf.random.uniform([2, 32, 32, 1], -1, 1, seed=1)
    ab = g(l, training=False).numpy()
    assert ab.shape == (2, 32, 32, 2) and np.abs(ab).max() <= 110 / 110.0
    path = saving.save_generator(g, tmp_path / "g.keras")
    loaded, size = saving.load_generator(str(path))
    assert size == 32
    np.testing.assert_allclose(loaded(l, training=False), ab, atol=2e-3)  # float16 weights in the file
    with pytest.raises(ColorganError, match="unknown head"):
        models.build_generator(name, 32, head="softmax", **options)


def test_init_from_a_regression_model_keeps_all_but_the_head(tmp_path):
    tanh = models.build_generator("resunet", 64, width=8, depth=4)
    tanh.set_weights([np.random.default_rng(5).normal(size=w.shape).astype(np.float32) for w in tanh.weights])
    saving.save_generator(tanh, tmp_path / "tanh.keras")
    t = training.Trainer(tiny_config(tmp_path / "run", generator="resunet", generator_options="width=8,depth=4,head=classes",
                                     init_from=str(tmp_path / "tanh.keras")))
    saved = saving.load_keras_file(str(tmp_path / "tanh.keras"), colorizer=False)
    ours, theirs = t.generator.get_weights(), saved.get_weights()
    for a, b in zip(ours[:-2], theirs[:-2]):
        np.testing.assert_array_equal(a, b)
    assert ours[-2].shape == (1, 1, 8, Q) and theirs[-2].shape == (1, 1, 8, 2)


def test_class_loss_without_the_class_head_is_refused(tmp_path):
    with pytest.raises(ColorganError, match="head=classes"):
        training.Trainer(tiny_config(tmp_path, class_weight=1.0))


def test_a_tiny_run_trains_the_class_head_and_checkpoints_its_weights(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, image_size=32, generator_options="base_filters=8,depth=5,head=classes",
                      class_weight=1.0, class_prior_photos=6, pretrain_l1_weight=10.0, l1_weight=10.0,
                      l1_rebalance=0.9, colourfulness_weight=1.0, ema=0.9, checkpoint_every=2)
    result, logs = run_logging_losses(cfg, stop_at=2)
    assert result["stopped_by"] == "SIGTERM"
    for values in logs.values():
        assert {"generator/classes", "generator/l1_rebalanced"} <= set(values)
        assert all(np.isfinite(v) for v in values.values())
    t = result["trainer"]
    weights, l1_weights = t.class_weights.numpy(), t.l1_weights.numpy()
    counts, seen = training.prior.class_counts("samples", 6)
    assert seen == 6 and counts.sum() == 6 * 64 * 64
    prior = ab_bins.empirical_prior(counts)
    np.testing.assert_allclose(weights, ab_bins.rebalancing_weights(prior), rtol=1e-6)
    np.testing.assert_allclose(l1_weights, ab_bins.rebalancing_weights(prior, mix=0.9), rtol=1e-6)
    # A resumed run takes the weights from its checkpoint (it never estimates them again), and trains on.
    monkeypatch.setattr(training.loop, "colour_prior", lambda cfg: pytest.fail("estimated again"))
    resumed, later = run_logging_losses(cfg)
    np.testing.assert_array_equal(resumed["trainer"].class_weights.numpy(), weights)
    np.testing.assert_array_equal(resumed["trainer"].l1_weights.numpy(), l1_weights)
    assert resumed["step"] == 5 and min(later) == 3
