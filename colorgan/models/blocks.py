"""Building blocks the networks share: pix2pix's initialisers, normalisation by name, size checks, and
the two colour heads (tanh regression of ab, or Zhang et al.'s classes with their annealed mean)."""
import keras
from keras import layers

from colorgan import ab_bins, color
from colorgan.errors import ColorganError

HEADS = ("tanh", "classes")

# pix2pix initialises every conv from N(0, 0.02) and BatchNorm gamma from N(1, 0.02).
def conv_init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def gamma_init():
    return keras.initializers.RandomNormal(1.0, 0.02)


def norm_layer(kind, name=None):
    """batch | instance | layer | none. Matches PyTorch's BatchNorm2d defaults (momentum 0.1, eps 1e-5)."""
    if kind == "batch":
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=gamma_init(),
                                         name=name)
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


def class_head(x, name="ab"):
    """Zhang et al.'s head: a 1x1 conv to the logits of every ab class ("ab_logits", which the class
    loss reads), then their annealed mean as ab in model units."""
    logits = layers.Conv2D(ab_bins.count_classes(), 1, kernel_initializer=conv_init(), name="ab_logits")(x)
    return AnnealedMean(name=name)(logits)
