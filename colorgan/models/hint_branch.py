"""The side branch through which a generator takes colour hints (``hints=true``; colorgan/hints.py).

The hints arrive as a second input, ``hints`` (B, S, S, 3): a*/110 and b*/110 at the hinted pixels and a
mask. A small branch adds them to the decoder at each resolution (``inject``), where the decoder's
convolutions, which see the photo's edges, can spread a colour over the object it belongs to, and to the
pre-activation of the colour head (``into_head``), so that a colour shows where it was given. The
encoder, and with it what the ImageNet features say, is untouched.

Every branch ends in a convolution that starts at zero, and no layer of a branch has a bias: a model with
the branch computes exactly what the same model without it did, with or without hints, until it trains;
and once trained, without hints (all maps zero) the branch still adds exactly zero, so the model computes
what its other weights compute. Its layers are named ``hint_*``; ``saving.copy_weights`` starts such a
model from a file without them (--init_from).
"""
import keras
from keras import layers

from colorgan import hints as hint_maps

PREFIX = "hint_"
INPUT_NAME = "hints"
WIDTH = 16  # filters of each branch's hidden layer


@keras.saving.register_keras_serializable(package="colorgan")
class PoolHints(layers.Layer):
    """Hint maps (B, S, S, 3) -> the same at 1/``stride`` of the size: per cell, a* and b* as the largest
    positive value minus the largest negative one (a lone hint's own value; several, a blend of their
    extremes), and whether the cell holds a hint. Pooling only, no division, so that it quantises to int8."""

    def __init__(self, stride, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, hints):
        pool = lambda x: keras.ops.max_pool(x, self.stride, self.stride, padding="valid")
        ab = hints[..., :2]
        return keras.ops.concatenate([pool(ab) - pool(-ab), pool(hints[..., 2:])], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // self.stride, width // self.stride, channels)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def hint_input(image_size):
    return keras.Input((image_size, image_size, hint_maps.CHANNELS), name=INPUT_NAME)


def _branch(hints, x, channels, name, kernel):
    stride = hints.shape[1] // x.shape[1]
    h = PoolHints(stride, name=f"{PREFIX}{name}_pool")(hints) if stride > 1 else hints
    h = layers.Conv2D(WIDTH, 3, padding="same", use_bias=False, activation="relu", kernel_initializer="he_normal",
                      name=f"{PREFIX}{name}_conv")(h)
    return layers.Conv2D(channels, kernel, padding="same", use_bias=False, kernel_initializer="zeros",
                         name=f"{PREFIX}{name}_out")(h)


def inject(x, hints, name):
    """Decoder features ``x`` (B, s, s, C) plus the hints at their resolution, through a branch that starts at 0."""
    if hints is None:
        return x
    return layers.Add(name=f"{PREFIX}{name}_add")([x, _branch(hints, x, x.shape[-1], name, 1)])


def into_head(pre_activation, hints, name=f"{PREFIX}head_add"):
    """The colour head's pre-activation (the tanh's input, or the class logits) plus the hints at its size."""
    if hints is None:
        return pre_activation
    branch = _branch(hints, pre_activation, pre_activation.shape[-1], "head", 3)
    return layers.Add(name=name)([pre_activation, branch])


def takes_hints(model):
    """True for a generator with the hints input (its second input, beside L)."""
    return len(getattr(model, "inputs", None) or []) == 2
