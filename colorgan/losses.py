"""GAN objectives, chosen by name, plus the L1 term and the WGAN-GP gradient penalty.

Every function returns a *per-example* loss of shape (B,): the training step divides by the global
batch with ``tf.nn.compute_average_loss``, which keeps the loss right under any tf.distribute strategy.
Critic outputs are patch grids, so each example's loss is the mean over its patches.
"""
import tensorflow as tf

from colorgan import ab_bins, color


def _per_example_mean(x):
    return tf.reduce_mean(tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1]), axis=1)


def l1(fake_ab, real_ab):
    return _per_example_mean(tf.abs(tf.cast(fake_ab, tf.float32) - tf.cast(real_ab, tf.float32)))


def rebalanced_l1(fake_ab, real_ab, class_weights):
    """L1 with each pixel weighted by the rebalancing weight of its true colour's class (Zhang et al.'s
    weights, which average 1 over the training pixels). The minimiser of plain L1 is the median of the
    colours a gray pixel could have, mostly a dull brown; weighting the rare vivid colours up moves it
    towards them where the photo makes them likely. ``real_ab`` in model units (ab/110)."""
    real_ab = tf.cast(real_ab, tf.float32)
    weight = tf.gather(tf.cast(class_weights, tf.float32), ab_bins.nearest(real_ab * color.AB_SCALE))
    return _per_example_mean(weight[..., None] * tf.abs(tf.cast(fake_ab, tf.float32) - real_ab))


def _bce(logits, label):
    logits = tf.cast(logits, tf.float32)
    return _per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), label), logits))


def _mse(outputs, label):
    return _per_example_mean(tf.square(tf.cast(outputs, tf.float32) - label))


class Vanilla:
    """pix2pix: binary cross-entropy on logits; the critic loss is halved, as in the original."""
    name = "vanilla"
    uses_gradient_penalty = False

    def critic_loss(self, real_out, fake_out):
        return 0.5 * (_bce(real_out, 1.0) + _bce(fake_out, 0.0))

    def generator_loss(self, fake_out):
        return _bce(fake_out, 1.0)


class LSGAN(Vanilla):
    """Least squares (Mao et al. 2017): gentler gradients for samples far from the decision boundary."""
    name = "lsgan"

    def critic_loss(self, real_out, fake_out):
        return 0.5 * (_mse(real_out, 1.0) + _mse(fake_out, 0.0))

    def generator_loss(self, fake_out):
        return _mse(fake_out, 1.0)


class WGANGP:
    """Wasserstein loss with gradient penalty (Gulrajani et al. 2017); the critic outputs scores."""
    name = "wgan-gp"
    uses_gradient_penalty = True

    def critic_loss(self, real_out, fake_out):
        return _per_example_mean(fake_out) - _per_example_mean(real_out)

    def generator_loss(self, fake_out):
        return -_per_example_mean(fake_out)


OBJECTIVES = {cls.name: cls for cls in (Vanilla, LSGAN, WGANGP)}


def gradient_penalty(critic, real_lab, fake_lab, alpha):
    """Per-example (||grad critic(x)||_2 - 1)^2 at x between real and fake Lab images.

    ``alpha`` (B, 1, 1, 1) picks the point on each segment; the caller draws it, so that its randomness
    is seeded by the step and resumes exactly.
    """
    real_lab = tf.cast(real_lab, tf.float32)
    mixed = real_lab + alpha * (tf.cast(fake_lab, tf.float32) - real_lab)
    with tf.GradientTape() as tape:
        tape.watch(mixed)
        scores = tf.reduce_sum(tf.cast(critic(mixed, training=True), tf.float32))
    grads = tape.gradient(scores, mixed)
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) + 1e-12)
    return tf.square(norms - 1.0)


# --------------------------------------------------------------------------------------------------
# Terms that reward right, lively colour. Each takes RGB in [0, 1] (the Lab prediction turned back into
# the photo it stands for) and returns a per-example loss of shape (B,).


def colourfulness_loss(fake_rgb, real_rgb):
    """DDColor's colourfulness term, one-sided: how much duller than the real photo the output is,
    in hundredths of the 0..255 colourfulness scale. Output at least as lively as the photo costs nothing,
    so the term never rewards colour beyond what the photo has."""
    deficit = tf.stop_gradient(color.colourfulness(real_rgb)) - color.colourfulness(fake_rgb)
    return tf.nn.relu(deficit) / 100.0


def perceptual_loss(features, fake_rgb, real_rgb):
    """Mean squared distance of ImageNet features (Johnson et al. 2016), averaged over the layers.

    ``features`` maps RGB in [0, 1] to a list of feature maps (``models.perceptual_features``: the offline
    EfficientNet-Lite0, never the FID Inception network, which is the evaluation's judge). Each layer's
    distance is divided by the mean square of that photo's real features there, so that every layer
    weighs alike whatever its scale.
    """
    fake_maps = features(tf.cast(fake_rgb, tf.float32))
    real_maps = features(tf.cast(real_rgb, tf.float32))
    per_layer = []
    for fake, real in zip(fake_maps, real_maps):
        fake, real = tf.cast(fake, tf.float32), tf.stop_gradient(tf.cast(real, tf.float32))
        scale = _per_example_mean(tf.square(real)) + 1e-6
        per_layer.append(_per_example_mean(tf.square(fake - real)) / scale)
    return tf.add_n(per_layer) / len(per_layer)


def rebalanced_cross_entropy(logits, real_ab, class_weights):
    """Zhang et al.'s class-rebalanced multinomial loss: -sum_q Z_q log softmax(logits)_q per pixel, times
    the rebalancing weight of the pixel's nearest class, averaged over the pixels.

    ``logits`` (B, H, W, Q) from the generator's class head; ``real_ab`` (B, H, W, 2) in model units (ab/110);
    ``class_weights`` (Q,) from ``ab_bins.rebalancing_weights``. Z, the soft encoding, has five non-zero
    classes per pixel, so only those five log-probabilities are gathered. A head below full resolution
    is scored against the photo's ab averaged over each of its cells.
    """
    real_ab = tf.cast(real_ab, tf.float32)
    if logits.shape[1] != real_ab.shape[1] or logits.shape[2] != real_ab.shape[2]:
        real_ab = tf.image.resize(real_ab, tf.shape(logits)[1:3], method="area")
    indices, target = ab_bins.soft_encode(real_ab * color.AB_SCALE)
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    cross_entropy = -tf.reduce_sum(target * tf.gather(log_p, indices, batch_dims=3), axis=-1)
    return _per_example_mean(tf.gather(tf.cast(class_weights, tf.float32), indices[..., 0]) * cross_entropy)
