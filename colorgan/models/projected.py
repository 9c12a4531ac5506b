"""The projected critic (Sauer et al. 2021, "Projected GANs Converge Faster"), for colour.

    D(L, ab) = [ h_s( F_s( rgb(L, ab) ) )  for s in strides ]

F is a frozen ImageNet EfficientNet-Lite and F_s its feature map at stride s; each h_s is a small
trainable patch critic. A critic learnt from scratch (the PatchGAN) must first learn what grass, skin and
sky are before it can say that their colour is wrong; ImageNet features already tell them apart and
respond to colour, which is the paper's case for far faster convergence. (Training the shipped model on
with it for 16,000 photos kept it on its PSNR-colourfulness curve, as the PatchGAN did:
models/MODEL_CARD.md.) The paper also passes the features through fixed random 1x1 and cross-scale mixing
layers; here each head's first convolution mixes the channels and the scales are judged separately.

F is never the FID Inception network, which judges the evaluation.
"""
import keras
from keras import layers

from colorgan import color
from colorgan.errors import ColorganError
from colorgan.models import efficientnet_lite
from colorgan.models.blocks import LeakyReLU, check_size, conv_init


@keras.saving.register_keras_serializable(package="colorgan")
class LabToEncoderRGB(layers.Layer):
    """The model's Lab (``L/50 - 1``, ``ab/110``) -> the sRGB photo it stands for, preprocessed for an
    EfficientNet-Lite. In float32 under any mixed-precision policy: the Lab maths needs the range."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, lab):
        rgb = color.model_to_rgb(lab[..., :1], lab[..., 1:])
        return efficientnet_lite.preprocess_input(rgb * 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def projected(image_size=256, in_channels=3, variant="lite0", strides=(4, 8, 16), filters=64,
              encoder_weights="imagenet", spectral_norm=True):
    """Frozen EfficientNet-Lite features at ``strides``, a patch critic on each (two 3x3 convs with
    ``filters`` channels, LeakyReLU, a 1x1 conv to one logit per cell).

    The output is one grid at the finest stride with a channel per scale (the coarser logits repeated
    over the cells they cover), so the per-example mean of the loss weighs every scale alike.
    ``strides``: a '/'-separated string from --critic_options (``strides=4/8/16``) or a sequence.
    """
    allowed = "/".join(map(str, efficientnet_lite.FEATURE_LAYERS))
    try:
        strides = sorted({int(s) for s in (str(strides).split("/") if isinstance(strides, (str, int)) else strides)})
    except ValueError:
        strides = []
    if not strides or any(s not in efficientnet_lite.FEATURE_LAYERS for s in strides):
        raise ColorganError(f"the projected critic's strides must be some of {allowed} (e.g. strides=4/8/16)")
    if in_channels != 3:
        raise ColorganError("the projected critic judges Lab photos: in_channels must be 3")
    check_size("the projected critic", image_size, strides[-1])
    weights = None if encoder_weights in (None, "none") else encoder_weights
    base = efficientnet_lite.EfficientNetLite(variant, input_shape=(image_size, image_size, 3), weights=weights,
                                              drop_connect_rate=0.0)  # frozen: no stochastic depth
    features = keras.Model(base.input, [base.get_layer(efficientnet_lite.FEATURE_LAYERS[s]).output
                                        for s in strides], name="features")
    features.trainable = False

    # Spectral norm's power iteration underflows in float16 (not in bfloat16, which has float32's range) and
    # turns logits into NaN: under a float16 policy the small heads compute in float32.
    float16 = keras.mixed_precision.global_policy().compute_dtype == "float16"
    head_dtype = "float32" if float16 and spectral_norm else None

    def conv(x, filters, kernel, name):
        c = layers.Conv2D(filters, kernel, padding="same", kernel_initializer=conv_init(), name=name,
                          dtype=head_dtype)
        return (layers.SpectralNormalization(c, name=f"{name}_sn", dtype=head_dtype) if spectral_norm else c)(x)

    inputs = keras.Input((image_size, image_size, in_channels), name="Lab")
    maps = features(LabToEncoderRGB(name="rgb")(inputs))
    grids = []
    for s, x in zip(strides, maps):
        for i in range(2):
            x = LeakyReLU(0.2, dtype=head_dtype)(conv(x, filters, 3, f"head{s}_conv{i}"))
        x = conv(x, 1, 1, f"head{s}_logits")
        grids.append(layers.UpSampling2D(s // strides[0], name=f"head{s}_cells")(x) if s > strides[0] else x)
    outputs = layers.Activation("linear", dtype="float32", name="patch_logits")(
        layers.Concatenate(name="scales")(grids) if len(grids) > 1 else grids[0])
    return keras.Model(inputs, outputs, name="projected")
