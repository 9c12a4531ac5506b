"""The 70x70 PatchGAN critic of pix2pix (``NLayerDiscriminator``)."""
import keras
from keras import layers

from colorgan.models.blocks import LeakyReLU, check_size, conv_init, norm_layer


def patchgan(image_size=256, in_channels=3, base_filters=64, n_layers=3, norm="batch",
             spectral_norm=False):
    """pix2pix ``NLayerDiscriminator``: each output logit judges one 70x70 patch (n_layers=3).

    PyTorch pads 1 on each side; the stride-1 layers use explicit padding and valid convs so that a
    256 input gives the same 30x30 grid.
    """
    check_size(f"patchgan with {n_layers} layers", image_size, 2 ** n_layers)
    inputs = keras.Input((image_size, image_size, in_channels), name="Lab")

    def conv(x, filters, stride, bias, name):
        c = layers.Conv2D(filters, 4, stride, "valid", use_bias=bias, kernel_initializer=conv_init(), name=name)
        if spectral_norm:
            c = layers.SpectralNormalization(c, name=f"{name}_sn")
        return c(layers.ZeroPadding2D(1)(x))

    x = LeakyReLU(0.2)(conv(inputs, base_filters, 2, True, "conv0"))
    for i in range(1, n_layers + 1):
        stride = 2 if i < n_layers else 1
        x = conv(x, base_filters * min(2 ** i, 8), stride, norm != "batch", f"conv{i}")
        n = norm_layer(norm, f"norm{i}")
        x = n(x) if n else x
        x = LeakyReLU(0.2)(x)
    x = conv(x, 1, 1, True, "logits")
    outputs = layers.Activation("linear", dtype="float32", name="patch_logits")(x)
    return keras.Model(inputs, outputs, name="patchgan")
