"""Building blocks the networks share: pix2pix's initialisers, normalisation by name, size checks."""
import keras
from keras import layers

from colorgan.errors import ColorganError

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
