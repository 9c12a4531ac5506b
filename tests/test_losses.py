"""The objectives on known tensors: GAN losses, the gradient penalty, and the colour terms."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from colorgan import color, losses, metrics, models


def photos(size):
    """Real photos from the installed packages, as float RGB (B, size, size, 3) in [0, 1]."""
    from colorgan import sources
    images = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 255.0
              for p in sources.sample_photo_files()[:6]]
    return np.stack(images)


def test_lsgan_pulls_real_patches_to_1_and_fake_to_0():
    real, fake = tf.fill([2, 3, 3, 1], 1.0), tf.fill([2, 3, 3, 1], 0.0)
    objective = losses.LSGAN()
    np.testing.assert_allclose(objective.critic_loss(real, fake), [0.0, 0.0])
    np.testing.assert_allclose(objective.generator_loss(fake), [1.0, 1.0])  # (0 - 1)^2
    np.testing.assert_allclose(objective.critic_loss(fake, real), [1.0, 1.0])  # 0.5 * (1 + 1)


def test_vanilla_is_binary_cross_entropy_on_logits():
    logits = tf.constant([[[[2.0]]], [[[-1.0]]]])
    objective = losses.Vanilla()
    softplus = lambda x: np.log1p(np.exp(x))
    np.testing.assert_allclose(objective.generator_loss(logits), softplus(-np.array([2.0, -1.0])), rtol=1e-6)
    np.testing.assert_allclose(objective.critic_loss(logits, logits),
                               0.5 * (softplus(-np.array([2.0, -1.0])) + softplus(np.array([2.0, -1.0]))), rtol=1e-6)


def test_wasserstein_signs_reward_the_critic_for_scoring_real_higher():
    real, fake = tf.fill([1, 2, 2, 1], 3.0), tf.fill([1, 2, 2, 1], -1.0)
    objective = losses.WGANGP()
    assert float(objective.critic_loss(real, fake)[0]) == pytest.approx(-4.0)  # E[D(fake)] - E[D(real)]
    assert float(objective.generator_loss(fake)[0]) == pytest.approx(1.0)      # -E[D(fake)]


class LinearCritic(tf.Module):
    """D(x) = sum(w * x): its gradient is w everywhere, so the penalty is (|w| - 1)^2 exactly."""

    def __init__(self, w):
        self.w = tf.constant(w, tf.float32)

    def __call__(self, x, training=False):
        return tf.reduce_sum(self.w * x, axis=[1, 2, 3])[:, None]


@pytest.mark.parametrize("norm", [1.0, 3.0])
def test_gradient_penalty_is_zero_for_a_unit_gradient_critic(norm):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4, 3)).astype(np.float32)
    w *= norm / np.linalg.norm(w)
    real, fake = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 4, 4, 3))
    penalty = losses.gradient_penalty(LinearCritic(w), real, fake, tf.fill([2, 1, 1, 1], 0.3))
    np.testing.assert_allclose(penalty, [(norm - 1.0) ** 2] * 2, atol=1e-5)


def test_colourfulness_term_agrees_with_the_metric():
    rgb = photos(48)
    np.testing.assert_allclose(color.colourfulness(rgb), metrics.colourfulness(rgb * 255),
                               rtol=1e-4, atol=0.01)
    gray = np.repeat(rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
    deficit = losses.colourfulness_loss(gray, rgb).numpy()
    np.testing.assert_allclose(deficit, (metrics.colourfulness(rgb * 255) - metrics.colourfulness(gray * 255)) / 100,
                               rtol=2e-3, atol=1e-4)
    # One-sided: an output livelier than the photo is not rewarded, nor pushed back.
    assert np.all(losses.colourfulness_loss(rgb, gray).numpy() == 0)


def test_colourfulness_term_pushes_dull_output_towards_colour():
    rgb = tf.constant(photos(32))
    dull = tf.Variable(0.5 * rgb + 0.5 * tf.reduce_mean(rgb, axis=-1, keepdims=True))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.colourfulness_loss(dull, rgb))
    step = -0.5 * tape.gradient(loss, dull)
    assert np.all(metrics.colourfulness((dull + step).numpy() * 255) > metrics.colourfulness(dull.numpy() * 255))


@pytest.fixture(scope="module")
def features():
    return models.perceptual_features(64)


def test_perceptual_loss_is_zero_for_identical_images_and_grows_with_distortion(features):
    rgb = photos(64)
    assert np.allclose(losses.perceptual_loss(features, rgb, rgb), 0.0, atol=1e-7)
    rng = np.random.default_rng(0)
    distances = [float(tf.reduce_mean(losses.perceptual_loss(
        features, np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 1).astype(np.float32), rgb)))
        for sigma in (0.02, 0.08, 0.25)]
    assert 0 < distances[0] < distances[1] < distances[2]
    # Colour matters to it: the gray version of a photo is far from the photo.
    gray = np.repeat(rgb.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert float(tf.reduce_mean(losses.perceptual_loss(features, gray, rgb))) > distances[0]


def test_perceptual_features_are_frozen_imagenet_weights(features):
    assert not features.trainable_variables
    from colorgan.models import efficientnet_lite
    reference = efficientnet_lite.EfficientNetLite("lite0", input_shape=(64, 64, 3), weights="imagenet")
    stem = next(w for w in features.weights if w.path.endswith("stem_conv/kernel"))
    np.testing.assert_array_equal(stem.numpy(), reference.get_layer("stem_conv").kernel.numpy())
