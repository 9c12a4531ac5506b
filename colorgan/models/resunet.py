"""A U-Net whose levels are pre-activation residual blocks."""
import keras
from keras import layers

from colorgan.errors import ColorganError
from colorgan.models import hint_branch
from colorgan.models.blocks import check_head, check_size, class_head, conv_init, norm_layer


def residual_block(x, filters, norm, name):
    """Pre-activation residual block (norm, ReLU, 3x3 conv, twice), 1x1 projection when widths differ."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, kernel_initializer=conv_init(), name=f"{name}_proj")(x)
    for j in range(2):
        n = norm_layer(norm, f"{name}_norm{j}")
        x = n(x) if n else x
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=norm != "batch",
                          kernel_initializer=conv_init(), name=f"{name}_conv{j}")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def upsample(x, filters, mode, name):
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, 4, 2, "same", kernel_initializer=conv_init(), name=name)(x)
    if mode == "resize":
        # Resize then conv avoids the checkerboard artefacts transposed convs can leave.
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        return layers.Conv2D(filters, 3, padding="same", kernel_initializer=conv_init(), name=name)(x)
    raise ColorganError(f"unknown upsampling {mode!r}: use transpose or resize")


def resunet(image_size=256, in_channels=1, out_channels=2, width=16, depth=6, blocks=2, norm="batch",
            upsampling="resize", max_width=512, head="tanh", hints=False):
    """U-Net whose every level is ``blocks`` residual blocks; width doubles per level up to max_width.

    Every level costs about the same FLOPs (width doubles as the area quarters), so the default keeps
    the full-resolution width small and spends depth instead: 16 wide, 6 levels (an 8x8 bottleneck at
    256 px), 2 blocks: 19.8 M parameters and 19.0 GFLOPs per 256x256 image, against the unet's 54.4 M
    and 12.0. At width 32 and 5 levels it would cost 61.6 GFLOPs for the same parameter count.
    """
    check_head(head)
    check_size(f"resunet with depth {depth}", image_size, 2 ** (depth - 1))
    widths = [min(width * 2 ** i, max_width) for i in range(depth)]
    inputs = keras.Input((image_size, image_size, in_channels), name="L")
    hint_maps = hint_branch.hint_input(image_size) if hints else None
    x = layers.Conv2D(widths[0], 3, padding="same", kernel_initializer=conv_init(), name="stem")(inputs)
    skips = []
    for level, w in enumerate(widths):
        if level > 0:
            x = layers.Conv2D(w, 3, 2, "same", kernel_initializer=conv_init(), name=f"down{level}")(x)
        for b in range(blocks):
            x = residual_block(x, w, norm, f"enc{level}_block{b}")
        skips.append(x)
    for level in reversed(range(depth - 1)):
        x = upsample(x, widths[level], upsampling, f"up{level}")
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        if 2 ** level <= 16:
            x = hint_branch.inject(x, hint_maps, f"skip{level}")
        for b in range(blocks):
            x = residual_block(x, widths[level], norm, f"dec{level}_block{b}")
    n = norm_layer(norm, "head_norm")
    x = n(x) if n else x
    x = layers.ReLU()(x)
    if head == "classes":
        outputs = class_head(x, hints=hint_maps)
    else:
        x = layers.Conv2D(out_channels, 1, kernel_initializer=conv_init(), name="head")(x)
        x = hint_branch.into_head(x, hint_maps)
        outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs if hint_maps is None else [inputs, hint_maps], outputs, name="resunet")
