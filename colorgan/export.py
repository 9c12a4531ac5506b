"""Export a trained generator for serving (TF SavedModel) and for phones (TFLite), and check the copies.

SavedModel: the whole photo-in, photo-out pipeline is in the graph, so a TF Serving client sends JPEG
or PNG bytes of any size and gets PNG bytes back at the same size. `serving_default` takes `images` and
returns `images_bytes`; `colorize_saturated` also takes `saturation`, a scalar colour strength (the
model's a*b* times it, as `colorize --saturation`). TF Serving's REST API base64-encodes a string output
only when its name ends in `_bytes` (and decodes a {"b64": ...} input of any string tensor), so REST
clients get valid JSON. A warm-up request (one small JPEG) rides along in
`assets.extra/tf_serving_warmup_requests`. A model trained with colour hints (colorgan/hints.py) also gets
`colorize_with_hints`: `images`, `hint_points` (float32 [batch, K, 2]: x, y in each photo's pixels; rows with
a negative x or y are padding) and `hint_colors` (uint8 [batch, K, 3]: sRGB) -> `images_bytes`, each colour's
a*b* taken at the photo's own L* in the graph, as `colorgan.inference` takes it; its `predict_ab` takes the
hint maps beside L.
TFLite: only the L -> ab generator goes into the flatbuffer; the colour conversion around it runs on
the phone's side (or in `colorgan.inference.TFLiteColorizer` here). ONNX: see `colorgan.onnx_export`.
"""
import datetime
import json
import math
import pathlib
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from colorgan import color, hints, inference, photos
from colorgan.errors import ColorganError
from colorgan.models import hint_branch

NORMALISATION = {
    "input": "L (CIE Lab, D65, sRGB pixel values), scaled L/50 - 1 to [-1, 1], shape (1, S, S, 1)",
    "output": "ab (CIE Lab), scaled ab/110 to [-1, 1], shape (1, S, S, 2)",
    "full_resolution": "resize the photo to S x S for L in; resize ab out (bilinear) to the photo's size "
                       "and join it with the photo's own L",
}
HINTS_NORMALISATION = {
    "hints": "colour hints as maps, shape (1, S, S, 3): a*/110 and b*/110 at the hinted pixels (0 elsewhere) and "
             "a mask (1 at the hinted pixels); a point (x, y) of a W x H photo lands in pixel (floor(x S / W), "
             "floor(y S / H)), its colour's a*b* taken at the photo's own L* there and pulled into sRGB at "
             "constant L* and hue; points sharing a pixel average; all zeros: no hints",
}


# ---------------------------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------------------------

SERVING_INPUT = "images"           # serving_default: encoded JPEG/PNG strings [batch]
SERVING_OUTPUT = "images_bytes"    # PNG strings [batch]; TF Serving REST base64-encodes *_bytes outputs
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"

def _decode(contents):
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    return photos.apply_exif_orientation(image, photos.exif_orientation(contents))


def photo_hint_maps(image, points, colours, image_size):
    """One decoded photo (H, W, 3) uint8, its hint points (K, 2) as (x, y) in its pixels (a negative x or y
    marks padding) and their sRGB colours (K, 3) -> the model's hint maps (S, S, 3), as colorgan.hints makes
    them: each colour's a*b* at the photo's own L* there. A point outside the photo is an INVALID_ARGUMENT."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x, y = points[:, 0], points[:, 1]
    used = (x >= 0.0) & (y >= 0.0)
    inside = (x < tf.cast(width, tf.float32)) & (y < tf.cast(height, tf.float32))
    tf.debugging.assert_equal(tf.reduce_all(tf.math.is_finite(points)) & tf.reduce_all(~used | inside), True,
                              message="every hint point must lie in its photo: 0 <= x < width and 0 <= y < height, "
                                      "in pixels from the top-left corner (negative x or y: padding)")
    x, y = tf.where(used, x, 0.0), tf.where(used, y, 0.0)
    pixels = tf.gather_nd(image, tf.stack([tf.cast(y, tf.int32), tf.cast(x, tf.int32)], axis=-1))
    ab = hints.ab_at_lightness(colours, color.lightness_of_srgb8(pixels)[..., 0]) / color.AB_SCALE
    row, col = hints.model_pixels(x, y, width, height, image_size)
    return hints.scatter_maps(row[None], col[None], ab[None], tf.cast(used, tf.float32)[None], image_size)[0]


class ServingPipeline:
    """The generator and the full-resolution pipeline around it: the bodies of the signatures."""

    def __init__(self, generator, image_size):
        self.generator = generator
        self.image_size = image_size
        self.takes_hints = hint_branch.takes_hints(generator)

    def predict_ab(self, l, hint_maps=None):
        if self.takes_hints:  # no maps: no hints, automatic colouring
            if hint_maps is None:
                hint_maps = tf.zeros(tf.concat([tf.shape(l)[:-1], [hints.CHANNELS]], axis=0))
            return {"ab": tf.cast(self.generator([l, hint_maps], training=False), tf.float32)}
        return {"ab": tf.cast(self.generator(l, training=False), tf.float32)}

    def colorize_tensor(self, image):
        l_full, l_model = inference.prepare(image[None], self.image_size)
        return {"image": inference.finish(l_full, self.predict_ab(l_model)["ab"])[0]}

    def encode_all(self, images, ab):
        """Each photo's PNG at its own size from its ab at model size."""
        def encode(contents_and_ab):
            contents, ab = contents_and_ab
            l_full, _ = inference.prepare(_decode(contents)[None], self.image_size)
            return tf.io.encode_png(inference.finish(l_full, ab[None])[0])
        # The "_bytes" suffix is what makes TF Serving's REST API send the PNGs base64-encoded.
        return {SERVING_OUTPUT: tf.map_fn(encode, (images, ab), fn_output_signature=tf.string)}

    def colorize_encoded(self, images, saturation=None):
        # Photos differ in size, so each is decoded on its own; but the generator runs once, on the
        # whole batch at model size, outside the loop.
        def model_input(contents):
            return inference.prepare(_decode(contents)[None], self.image_size)[1][0]

        spec = tf.TensorSpec([self.image_size, self.image_size, 1], tf.float32)
        ab = self.predict_ab(tf.map_fn(model_input, images, fn_output_signature=spec))["ab"]
        if saturation is not None:  # as inference.SaturatedColorizer: a*b* scaled, kept in the model's range
            tf.debugging.assert_equal(tf.math.is_finite(saturation) & (saturation >= 0.0), True,
                                      message="saturation must be a finite number, 0 (gray) or more")
            ab = tf.clip_by_value(ab * saturation, -1.0, 1.0)
        return self.encode_all(images, ab)

    def colorize_with_hints(self, images, hint_points, hint_colors):
        """Photos and their hints (points [batch, K, 2], sRGB colours [batch, K, 3]) -> PNGs."""
        size = self.image_size

        def model_input(args):
            contents, points, colours = args
            image = _decode(contents)
            return (inference.prepare(image[None], size)[1][0],
                    photo_hint_maps(image, points, colours, size))

        spec = (tf.TensorSpec([size, size, 1], tf.float32), tf.TensorSpec([size, size, hints.CHANNELS], tf.float32))
        l, maps = tf.map_fn(model_input, (images, hint_points, hint_colors), fn_output_signature=spec)
        return self.encode_all(images, self.predict_ab(l, maps)["ab"])

    def archive(self):
        """A keras ExportArchive with the four signatures, and colorize_with_hints for a model with hints.

        Keras' archive (rather than a plain tf.Module) is what makes the Keras 3 variables loadable
        by TF1-style loaders such as `saved_model_cli run`; with tf.saved_model.save of a module
        holding the model they are missing there.
        """
        size = self.image_size
        archive = keras.export.ExportArchive()
        archive.track(self.generator)
        archive.add_endpoint("serving_default", self.colorize_encoded,
                             [tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
        archive.add_endpoint("colorize_saturated", self.colorize_encoded,
                             [tf.TensorSpec([None], tf.string, name=SERVING_INPUT),
                              tf.TensorSpec([], tf.float32, name="saturation")])
        archive.add_endpoint("colorize_tensor", self.colorize_tensor,
                             [tf.TensorSpec([None, None, None], tf.uint8, name="image")])
        l_spec = tf.TensorSpec([None, size, size, 1], tf.float32, name="l")
        if not self.takes_hints:
            archive.add_endpoint("predict_ab", self.predict_ab, [l_spec])
            return archive
        archive.add_endpoint("predict_ab", self.predict_ab,
                             [l_spec, tf.TensorSpec([None, size, size, hints.CHANNELS], tf.float32, name="hints")])
        archive.add_endpoint("colorize_with_hints", self.colorize_with_hints,
                             [tf.TensorSpec([None], tf.string, name=SERVING_INPUT),
                              tf.TensorSpec([None, None, 2], tf.float32, name="hint_points"),
                              tf.TensorSpec([None, None, 3], tf.uint8, name="hint_colors")])
        return archive


# TF Serving replays the PredictionLog records of WARMUP_FILE when it loads a version, so the first real
# request does not pay for initialising the graph. The protos live in tensorflow-serving-api; the few
# fields needed here are written directly (protobuf wire format) so exporting needs no extra package.
# tests/test_export.py parses the record with tensorflow-serving-api's own classes.

def _varint(value):
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number, payload):
    """One length-delimited protobuf field (wire type 2): a message, a string or bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def warmup_record(model_name, contents):
    """A serialised tensorflow.serving.PredictionLog: predict_log (6) > request (1) > PredictRequest with
    model_spec (1: name 1, signature_name 3) and inputs (2: map entry key 1, TensorProto value 2)."""
    tensor = tf.make_tensor_proto([contents], dtype=tf.string).SerializeToString()
    model_spec = _field(1, model_name.encode()) + _field(3, b"serving_default")
    request = _field(1, model_spec) + _field(2, _field(1, SERVING_INPUT.encode()) + _field(2, tensor))
    return _field(6, _field(1, request))


def warmup_jpeg():
    """A small colour gradient as JPEG bytes: the warm-up photo (not square, to exercise the resizes)."""
    y, x = np.mgrid[0:48, 0:64]
    return tf.io.encode_jpeg(np.stack([x * 4, y * 5, 255 - x * 4], axis=-1).astype(np.uint8)).numpy()


def write_warmup(saved_model_dir, model_name):
    with tf.io.TFRecordWriter(str(pathlib.Path(saved_model_dir) / WARMUP_FILE)) as writer:
        writer.write(warmup_record(model_name, warmup_jpeg()))


def next_version(model_base):
    versions = [int(p.name) for p in pathlib.Path(model_base).glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def metadata(image_size, source, takes_hints=False, **extra):
    normalisation = {**NORMALISATION, **HINTS_NORMALISATION} if takes_hints else NORMALISATION
    return {"image_size": int(image_size), "normalisation": normalisation, "hints": bool(takes_hints),
            "source": str(source),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra}


def export_saved_model(generator, image_size, out_dir, name="colorgan", version=None, source="", overwrite=False):
    """Write `out_dir/name/version/` in the TF Serving layout; returns that path.

    The SavedModel is built in a hidden temporary folder beside it and renamed into place, so TF
    Serving (which polls for numeric folders) never sees a half-written version. An existing version
    is replaced only with ``overwrite``, and only once the new one is complete.
    """
    model_base = pathlib.Path(out_dir) / name
    version = int(version) if version is not None else next_version(model_base)
    target = model_base / str(version)
    if target.exists() and not overwrite:
        raise ColorganError(f"{target} already exists; pick another --version, or pass --overwrite to replace it")
    model_base.mkdir(parents=True, exist_ok=True)
    archive = ServingPipeline(generator, image_size).archive()
    temporary = pathlib.Path(tempfile.mkdtemp(dir=model_base, prefix=f".{version}.", suffix=".tmp"))
    try:
        archive.write_out(str(temporary), verbose=False)
        extra = temporary / inference.SAVED_MODEL_METADATA
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_text(json.dumps(metadata(image_size, source, hint_branch.takes_hints(generator),
                                             format="saved_model", version=version), indent=2))
        write_warmup(temporary, name)
        temporary.chmod(0o777 & ~photos.current_umask())  # mkdtemp makes 0700; serving may run as another user
        if target.is_dir():  # --overwrite: the old version moves aside only now, and goes once the new is in
            replaced = pathlib.Path(tempfile.mkdtemp(dir=model_base, prefix=f".{version}.", suffix=".old"))
            target.rename(replaced / "version")
            temporary.rename(target)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            temporary.rename(target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------------------------------
# TFLite
# ---------------------------------------------------------------------------------------------

VARIANTS = ("float32", "float16", "int8", "dynamic_int8")
DYNAMIC_INT8_WARNING = (
    "dynamic_int8 (dynamic-range) quantisation re-quantises float activations at every layer, and its speed "
    "depends on the runtime: for the 256-pixel pix2pix U-Net on x86, LiteRT's built-in kernels ran it 26 times "
    "slower than float32 (about 50 times is reported elsewhere), while the default XNNPACK delegate ran it 2 "
    "times faster. Time it on the target device; int8 (full-integer) is small and fast everywhere.")


def convert_tflite(generator, image_size, variant, representative_l=None):
    """The generator alone as a batch-1 TFLite flatbuffer (bytes): input "l" (1, S, S, 1), and for a model
    with hints "hints" (1, S, S, 3), output ab (1, S, S, 2).

    float32: as trained. float16: weights stored in half precision (half the size, runs as float).
    int8: weights and activations in int8, with int8 inputs and output; needs `representative_l`,
    an iterable of normalised L batches (1, S, S, 1) from the data pipeline to calibrate ranges (for a
    model with hints, (L, hint maps) pairs: ``l_batches(..., with_hints=True)``).
    dynamic_int8: int8 weights, float activations; see DYNAMIC_INT8_WARNING.
    """
    if variant not in VARIANTS:
        raise ColorganError(f"unknown TFLite variant {variant!r}: use one of {', '.join(VARIANTS)}")
    if variant == "int8" and representative_l is None:
        raise ColorganError("int8 conversion needs representative photos to calibrate: pass --data")
    if variant == "dynamic_int8":
        logging.warning(DYNAMIC_INT8_WARNING)
    # Convert from a SavedModel of the inference call: that freezes Keras 3 variables into constants.
    # (from_concrete_functions leaves them as uninitialised resource variables in TF 2.21, and the
    # model then outputs NaN.) This is what from_keras_model does, minus its printout and with batch 1.
    archive = keras.export.ExportArchive()
    archive.track(generator)
    specs = [tf.TensorSpec([1, image_size, image_size, 1], tf.float32, name="l")]
    if hint_branch.takes_hints(generator):
        specs.append(tf.TensorSpec([1, image_size, image_size, hints.CHANNELS], tf.float32, name="hints"))
        archive.add_endpoint("serve", lambda l, maps: generator([l, maps], training=False), specs)
    else:
        archive.add_endpoint("serve", lambda l: generator(l, training=False), specs)
    with tempfile.TemporaryDirectory() as saved_model:
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif variant == "int8":
            samples = [batch if isinstance(batch, tuple) else (batch,) for batch in representative_l]
            if len(specs) == 2:  # a user's hint may carry any a*b*: the hints input must quantise all of [-1, 1]
                extreme = np.zeros(specs[1].shape, np.float32)
                extreme[:, ::2, ::2], extreme[:, 1::2, 1::2] = (1.0, 1.0, 1.0), (-1.0, -1.0, 1.0)
                samples.append((samples[0][0], extreme))
            converter.representative_dataset = lambda: ([np.asarray(x, np.float32) for x in batch] for batch in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def write_tflite(flatbuffer, path, image_size, variant, source="", **extra):
    """Write `path` (.tflite) and its metadata JSON beside it, each atomically."""
    from ai_edge_litert.interpreter import Interpreter
    path = pathlib.Path(path)
    photos.write_atomically(path, lambda f: f.write(flatbuffer))
    interpreter = Interpreter(model_content=flatbuffer)
    inputs, (tensor_out,) = interpreter.get_input_details(), interpreter.get_output_details()
    hint_input = next((t for t in inputs if "hints" in t["name"]), None)
    info = metadata(image_size, source, hint_input is not None, format="tflite", variant=variant,
                    inputs=[t["name"] for t in inputs], **extra)
    if variant == "int8":
        # A phone app quantises L (and the hint maps) and dequantises ab itself: real = scale * (q - zero_point).
        tensor_in = next(t for t in inputs if t is not hint_input)
        tensors = (("input", tensor_in), ("output", tensor_out)) + ((("hints", hint_input),) if hint_input else ())
        info["quantisation"] = {
            name: {"dtype": "int8", "scale": float(t["quantization"][0]), "zero_point": int(t["quantization"][1])}
            for name, t in tensors}
    photos.write_atomically(path.with_suffix(inference.METADATA_SUFFIX),
                               lambda f: f.write(json.dumps(info, indent=2).encode()))
    return path


# In the checks of a model with hints, every other photo gets this many hints simulated from its true colours.
CHECK_HINTS = 10


def l_batches(source, split, image_size, count, with_hints=False):
    """`count` normalised L batches of one photo each from a split of `source`, as the data pipeline
    prepares them: int8 calibration takes training photos, parity checks validation photos. With ``with_hints``
    (a model that takes them) each is an (L, hint maps) pair: every other photo without hints, the rest with
    CHECK_HINTS simulated from its true colours with a fixed seed."""
    from colorgan import data
    dataset = data.make_dataset(source, split, image_size, batch_size=1, training=False)
    if not with_hints:
        return [l.numpy() for l, _ in dataset.take(count)]
    return [(l.numpy(), hints.simulate(ab, [i, 37], count=CHECK_HINTS * (i % 2)).numpy())
            for i, (l, ab) in enumerate(dataset.take(count))]


# ---------------------------------------------------------------------------------------------
# Checking a converted model against the Keras one
# ---------------------------------------------------------------------------------------------

def parity(reference, candidate, l_batches):
    """Compare two colorizers' ab on the same normalised L inputs.

    Returns the maximum and mean absolute ab difference in Lab units, and the PSNR (dB) of the
    candidate's RGB colours against the reference's RGB colours (both built on the same L).
    """
    differences, squared_errors = [], []
    for batch in l_batches:  # L, or (L, hint maps) for a model with hints
        inputs = batch if isinstance(batch, tuple) else (batch,)
        l = inputs[0]
        ab_reference = reference.predict_ab(*inputs)
        ab_candidate = candidate.predict_ab(*inputs)
        differences.append(np.abs(ab_candidate - ab_reference).ravel() * color.AB_SCALE)
        rgb_reference = color.model_to_rgb(l, ab_reference).numpy()
        rgb_candidate = color.model_to_rgb(l, ab_candidate).numpy()
        squared_errors.append(((rgb_candidate - rgb_reference) ** 2).ravel())
    differences = np.concatenate(differences)
    mse = float(np.concatenate(squared_errors).mean())
    return {"max_ab_diff": float(differences.max()), "mean_ab_diff": float(differences.mean()),
            "psnr_db": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)}


def seconds_per_photo(colorizer, l, repeats=5):
    """Median wall time of one predict_ab call on a single photo (L, or an (L, hint maps) pair), after one
    warm-up call."""
    inputs = l if isinstance(l, tuple) else (l,)
    colorizer.predict_ab(*inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        colorizer.predict_ab(*inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
