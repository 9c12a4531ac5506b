"""Building blocks the networks share: pix2pix's initialisers, normalisation by name, size checks, and
the two colour heads (tanh regression of ab, or Zhang et al.'s classes with their annealed mean)."""
import keras
import tensorflow as tf
from keras import layers

from colorgan import ab_bins, color
from colorgan.errors import ColorganError

HEADS = ("tanh", "classes")

# pix2pix initialises every conv from N(0, 0.02) and BatchNorm gamma from N(1, 0.02).
def conv_init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def gamma_init():
    return keras.initializers.RandomNormal(1.0, 0.02)


@keras.saving.register_keras_serializable(package="colorgan")
class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization, its training step as one fused kernel (FusedBatchNormV3 and its gradient).

    Keras computes the batch moments op by op in float32, which under bfloat16 means casts, means, squared
    differences and their gradients around every norm of the pix2pix step. The fused kernel reads the
    bfloat16 activations as they are, keeps the statistics in float32, and lets grappler fuse the
    activation that follows; with the LeakyReLU below it made that step about a fifth faster on an AMX
    CPU (BENCHMARKS.md, 2026-12-07). Same weights, outputs and moving averages (of the biased variance,
    as Keras keeps them), so a model saved with either layer loads into the other. Inference,
    synchronized (multi-replica) batch norm and anything that is not a 4-D channels-last tensor take
    Keras's own path. It keeps Keras's class name so that unnamed layers keep their automatic names
    ("batch_normalization_3"), and with them the weight paths that the weight averages of earlier
    checkpoints are stored under.
    """

    def call(self, inputs, training=None, mask=None):
        fused = (training and self.trainable and mask is None and not self.renorm and not self.synchronized
                 and len(inputs.shape) == 4 and self.axis in (-1, 3))
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=tf.cast(inputs, self.compute_dtype), scale=gamma, offset=beta, mean=tf.zeros([0]),
            variance=tf.zeros([0]), epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the Bessel-corrected variance; Keras averages the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = unbiased_variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


@keras.saving.register_keras_serializable(package="colorgan")
class LeakyReLU(layers.LeakyReLU):
    """Keras's LeakyReLU, its gradient computed from its output instead of its input (the same numbers:
    for a positive slope the two have the same sign).

    With Keras's gradient, TensorFlow's graph optimiser (grappler's remapper) fuses a conv, its bias and
    this activation into one kernel but leaves the gradient reading the bias output it removed; the
    remapper then fails and drops every fusion of the step ("remapper failed: ... LeakyReluGrad ...
    missing node ... BiasAdd", printed at every trace of the pix2pix critic's step).
    Inference keeps Keras's plain op, so exported graphs do not change.
    """

    def call(self, inputs, training=None):
        slope = self.negative_slope
        if not training:
            return tf.nn.leaky_relu(inputs, alpha=slope)

        @tf.custom_gradient
        def leaky_relu(x):
            y = tf.nn.leaky_relu(x, alpha=slope)
            return y, lambda dy: tf.raw_ops.LeakyReluGrad(gradients=dy, features=y, alpha=slope)

        return leaky_relu(inputs)


def norm_layer(kind, name=None):
    """batch | instance | layer | none. Matches PyTorch's BatchNorm2d defaults (momentum 0.1, eps 1e-5)."""
    if kind == "batch":
        return BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=gamma_init(), name=name)
    if kind == "instance":
        return layers.GroupNormalization(groups=-1, epsilon=1e-5, gamma_initializer=gamma_init(), name=name)
    if kind == "layer":
        return layers.GroupNormalization(groups=1, epsilon=1e-5, gamma_initializer=gamma_init(), name=name)
    if kind == "none":
        return None
    raise ColorganError(f"unknown normalisation {kind!r}: use batch, instance, layer or none")


def check_size(name, image_size, factor):
    if image_size < factor or image_size % factor:
        smallest = factor
        raise ColorganError(
            f"{name} cannot take image_size={image_size}: it needs a multiple of {factor} "
            f"(smallest {smallest}); change --image_size or the model's depth")


@keras.saving.register_keras_serializable(package="colorgan")
class AnnealedMean(layers.Layer):
    """Class logits (..., Q) -> ab in model units (..., 2): the annealed mean of ``ab_bins``, in float32."""

    def __init__(self, temperature=ab_bins.TEMPERATURE, grid=ab_bins.GRID, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.temperature, self.grid = float(temperature), float(grid)

    def call(self, logits):
        return ab_bins.annealed_mean(logits, self.temperature, self.grid) / color.AB_SCALE

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "grid": self.grid}


def check_head(head):
    if head not in HEADS:
        raise ColorganError(f"unknown head {head!r}: use tanh (ab regression) or classes (Zhang et al.'s "
                            "ab classes with their annealed mean)")


def class_head(x, name="ab", hints=None):
    """Zhang et al.'s head: a 1x1 conv to the logits of every ab class ("ab_logits", which the class
    loss reads), then their annealed mean as ab in model units. With ``hints`` (a generator's hint maps)
    the logits also take the hint branch (hint_branch.into_head)."""
    from colorgan.models import hint_branch
    logits = layers.Conv2D(ab_bins.count_classes(), 1, kernel_initializer=conv_init(),
                           name="ab_logits" if hints is None else "ab_logits_conv")(x)
    if hints is not None:
        logits = hint_branch.into_head(logits, hints, name="ab_logits")
    return AnnealedMean(name=name)(logits)
