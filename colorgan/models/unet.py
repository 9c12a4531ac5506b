"""The pix2pix U-Net generator (Isola et al. 2017), layer for layer the PyTorch ``UnetGenerator``."""
import keras
from keras import layers

from colorgan.errors import ColorganError
from colorgan.models import hint_branch
from colorgan.models.blocks import LeakyReLU, check_head, check_size, class_head, conv_init, norm_layer


def unet(image_size=256, in_channels=1, out_channels=2, base_filters=64, depth=8, dropout=0.5,
         norm="batch", head="tanh", hints=False):
    """The pix2pix ``UnetGenerator``: ``depth`` stride-2 4x4 convs down, transposed convs up, skips.

    As in the PyTorch original, convs feeding a norm layer have no bias, the outermost down conv has
    no norm, the innermost has no norm, dropout sits in the three up blocks just below the bottleneck,
    and the outermost transposed conv keeps its bias and ends in tanh. ``head=classes`` replaces that
    conv by Zhang et al.'s class head at half resolution (as they predict below full size), whose ab is
    upsampled bilinearly. ``hints``: a second input of colour hints, added to the decoder at strides 16 and
    below and to the head through a branch that starts at zero (hint_branch).
    """
    check_head(head)
    if depth < 5:
        raise ColorganError(f"unet depth must be at least 5 (got {depth})")
    check_size(f"unet with depth {depth}", image_size, 2 ** depth)
    use_bias = norm != "batch"  # PyTorch: bias only where no BatchNorm follows
    filters = [min(base_filters * 2 ** i, base_filters * 8) for i in range(depth)]

    inputs = keras.Input((image_size, image_size, in_channels), name="L")
    hint_maps = hint_branch.hint_input(image_size) if hints else None
    x, skips = inputs, []
    for i, f in enumerate(filters):
        if i > 0:
            x = LeakyReLU(0.2)(x)
        x = layers.Conv2D(f, 4, 2, "same", use_bias=use_bias, kernel_initializer=conv_init(),
                          name=f"down{i}_conv")(x)
        if 0 < i < depth - 1:
            n = norm_layer(norm, f"down{i}_norm")
            x = n(x) if n else x
        skips.append(x)

    # Up block i undoes down block i; its output joins the input of down block i (skip first, as in
    # torch.cat([x, model(x)])). PyTorch puts dropout in the depth-5 blocks just below the innermost.
    for i in reversed(range(1, depth)):
        x = layers.ReLU()(x)
        x = layers.Conv2DTranspose(filters[i - 1], 4, 2, "same", use_bias=use_bias,
                                   kernel_initializer=conv_init(), name=f"up{i}_conv")(x)
        n = norm_layer(norm, f"up{i}_norm")
        x = n(x) if n else x
        if dropout and 4 <= i <= depth - 2:
            x = layers.Dropout(dropout, name=f"up{i}_dropout")(x)
        x = layers.Concatenate(name=f"skip{i - 1}")([skips[i - 1], x])
        if 2 ** i <= 16:
            x = hint_branch.inject(x, hint_maps, f"skip{i - 1}")
    x = layers.ReLU()(x)
    model_inputs = inputs if hint_maps is None else [inputs, hint_maps]
    if head == "classes":
        half = class_head(x, name="ab_half", hints=hint_maps)
        outputs = layers.UpSampling2D(2, interpolation="bilinear", dtype="float32", name="ab")(half)
        return keras.Model(model_inputs, outputs, name="unet")
    x = layers.Conv2DTranspose(out_channels, 4, 2, "same", kernel_initializer=conv_init(), name="up0_conv")(x)
    x = hint_branch.into_head(x, hint_maps)
    outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(model_inputs, outputs, name="unet")
