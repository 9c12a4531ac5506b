"""Full-resolution colourising with a trained generator, whatever form it was saved in.

The generator works at one square size S. A photo of any size is resized to S x S for the model;
the predicted ab channels are resized back (bilinear) to the photo's own size and joined with the
photo's full-resolution L. The output therefore has exactly the input's size and, up to uint8
rounding and gamut clipping, exactly its lightness.

    colorizer = load_colorizer("runs/quickstart")   # run dir, checkpoint, .keras, SavedModel, .tflite
    ab = colorizer.predict_ab(l)                     # normalised L (B,S,S,1) -> normalised ab (B,S,S,2)
    rgb = colorizer.colorize(photos.read_photo("cat.jpg").pixels)   # uint8 HxWxC -> uint8 HxWx3
    rgb = colorizer.colorize(gray, hints=[{"x": 120, "y": 80, "color": "#b3261e"}])  # a model with hints

A model trained with colour hints (colorgan/hints.py) takes them in every form: ``colorize(image, hints=...)``
resolves the user's points against the photo (a*b* at its own L*) and gives the model their maps at its size;
``predict_ab(l, hints)`` takes those maps (B, S, S, 3) directly. Without hints it colours automatically.

Out-of-gamut colours are pulled towards gray at constant lightness (``color.lab_to_srgb8``).
"""
import json
import os
import pathlib

import numpy as np
import tensorflow as tf

from colorgan import color, saving
from colorgan import hints as colour_hints
from colorgan.errors import ColorganError

# Name of the metadata file written next to a .tflite and inside a SavedModel's assets.extra/.
METADATA_SUFFIX = ".json"
SAVED_MODEL_METADATA = "assets.extra/colorgan.json"


# ---------------------------------------------------------------------------------------------
# The full-resolution pipeline, as TF functions so that the SavedModel runs the very same graph.
# ---------------------------------------------------------------------------------------------

def to_rgb_float(images):
    """uint8 images (..., H, W, C) with C = 1, 3 or 4 -> float RGB in [0, 1] (..., H, W, 3).

    Gray is broadcast to three equal channels (a = b = 0 in Lab); an alpha channel is dropped.
    """
    rgb = tf.cast(images[..., :3], tf.float32) / 255.0
    return tf.broadcast_to(rgb, tf.concat([tf.shape(rgb)[:-1], [3]], axis=0))


def rgb8(images):
    """uint8 images (..., H, W, C) with C = 1, 3 or 4 -> uint8 RGB (..., H, W, 3): gray is broadcast to
    three equal channels (a = b = 0 in Lab), an alpha channel dropped."""
    rgb = images[..., :3]
    return tf.broadcast_to(rgb, tf.concat([tf.shape(rgb)[:-1], [3]], axis=0))


def full_resolution_l(images):
    """uint8 photos (B, H, W, C) -> their normalised L (B, H, W, 1), from the luminance alone
    (``color.lightness_of_srgb8``)."""
    return color.lightness_of_srgb8(rgb8(images)) / color.L_CENTER - 1.0


def model_size_lab(images, image_size):
    """uint8 photos (B, H, W, C) -> normalised (L, ab) at S x S, made like the training data: the RGB photo
    resized to S x S (antialiased, so large photos do not alias), then converted to Lab."""
    small = tf.image.resize(to_rgb_float(images), (image_size, image_size), method="bilinear", antialias=True)
    return color.rgb_to_model(tf.clip_by_value(small, 0.0, 1.0))


def prepare(images, image_size):
    """uint8 photos (B, H, W, C) -> (full-resolution L (B, H, W, 1), model input L (B, S, S, 1))."""
    return full_resolution_l(images), model_size_lab(images, image_size)[0]


def finish(l_full, ab_model):
    """Full-resolution L (B, H, W, 1) and model ab (B, S, S, 2) -> uint8 RGB (B, H, W, 3)."""
    ab = tf.image.resize(tf.cast(ab_model, tf.float32), tf.shape(l_full)[1:3], method="bilinear") * color.AB_SCALE
    return color.lab_to_srgb8((l_full[..., 0] + 1.0) * color.L_CENTER, ab[..., 0], ab[..., 1])


def finish_strip(rows, ab):
    """uint8 rows of a photo (h, W, C) and their full-resolution ab (h, W, 2) -> uint8 RGB (h, W, 3).
    The rows' luminance gives their L* directly, with no Lab conversion of the photo."""
    y = color.luminance_of_srgb8(rgb8(rows))
    ab = ab * color.AB_SCALE
    return color.srgb8_of(color.f_of_luminance(y), y, ab[..., 0], ab[..., 1])


# ---------------------------------------------------------------------------------------------
# One interface over the four ways a generator can be stored.
# ---------------------------------------------------------------------------------------------

# Photos above this many pixels are coloured one at a time in strips of about STRIP_PIXELS, which bounds
# memory (a 12-megapixel photo whole would take about 1 GB of float tensors) and runs faster too.
LARGE_PHOTO_PIXELS = 4_000_000
STRIP_PIXELS = 1_000_000
# Full-resolution float work takes ~80 bytes a pixel (finish): a batch runs in parts of at most this many
# pixels, about 640 MB, whatever its size.
BATCH_PIXELS = 8_000_000


class Colorizer:
    """A generator behind one interface. Subclasses only say how to run L -> ab at the model size (and, for
    a model trained with hints, (L, hint maps) -> ab)."""

    kind = "generator"  # what it was loaded from, for reports (keras, saved_model, tflite)
    takes_hints = False  # whether predict_ab takes hint maps

    def __init__(self, image_size, source):
        self.image_size = int(image_size)
        self.source = str(source)
        spec = tf.TensorSpec([None, None, None, None], tf.uint8)
        # One trace serves every photo size: H, W and the batch stay dynamic.
        self._prepare = tf.function(lambda images: prepare(images, self.image_size), input_signature=[spec])
        self._finish = tf.function(finish, input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32),
                                                            tf.TensorSpec([None, None, None, 2], tf.float32)])
        self._resize_ab = tf.function(lambda ab, size: tf.image.resize(ab, size, method="bilinear"),
                                      input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32),
                                                       tf.TensorSpec([2], tf.int32)])
        self._finish_strip = tf.function(finish_strip, input_signature=[tf.TensorSpec([None, None, None], tf.uint8),
                                                                        tf.TensorSpec([None, None, 2], tf.float32)])

    def predict_ab(self, l, hints=None):
        """float32 normalised L (B, S, S, 1) -> normalised ab (B, S, S, 2) as numpy. A model trained with hints
        also takes their maps (B, S, S, 3) (colorgan/hints.py); None means no hints."""
        raise NotImplementedError

    def _predict(self, l, maps):
        return self.predict_ab(l) if maps is None else self.predict_ab(l, maps)

    def hint_maps(self, images, hints):
        """The model's hint maps (B, S, S, 3) for photos (B, H, W, C) and their hints (one entry a photo: None,
        a list of points, a hints document or colour_hints.Hints), or None when no photo has any."""
        if hints is None:
            return None
        if len(hints) != len(images):
            raise ValueError(f"hints must have one entry a photo: {len(hints)} for {len(images)} photos")
        resolved = [colour_hints.resolve([] if h is None else h, image) for h, image in zip(hints, images)]
        if not any(len(r) for r in resolved):
            return None
        if not self.takes_hints:
            raise ColorganError(f"the model {self.source} takes no colour hints; colour with a model trained "
                                "with them (colorgan train --config=hints_photos), or leave the hints out")
        return np.stack([r.maps(self.image_size) for r in resolved])

    def colorize_batch(self, images, hints=None):
        """uint8 photos of one size (B, H, W, C), C in {1, 3, 4} -> uint8 RGB (B, H, W, 3). ``hints``: None,
        or one entry a photo, each None or its hints (as ``colorize`` takes them)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected uint8 (B, H, W, 1|3|4) photos, got {images.dtype} {images.shape}")
        if not images.shape[1] or not images.shape[2]:
            raise ValueError(f"a photo of {images.shape[2]} x {images.shape[1]} pixels has nothing to colour; "
                             "pass photos of at least 1 x 1 pixels")
        if not len(images):  # an empty batch: an empty answer, without running the model
            return np.zeros(images.shape[:3] + (3,), np.uint8)
        maps = self.hint_maps(images, hints)
        if images.shape[1] * images.shape[2] > LARGE_PHOTO_PIXELS:
            return np.stack([self._colorize_in_strips(image, None if maps is None else maps[i:i + 1])
                             for i, image in enumerate(images)])
        step = max(1, BATCH_PIXELS // (images.shape[1] * images.shape[2]))
        if len(images) > step:
            return np.concatenate([self.colorize_batch(images[i:i + step], None if hints is None else hints[i:i + step])
                                   for i in range(0, len(images), step)])
        l_full, l_model = self._prepare(images)
        ab = self._predict(l_model.numpy(), maps)
        return self._finish(l_full, np.asarray(ab, np.float32)).numpy()

    def _colorize_in_strips(self, image, maps=None):
        """One large photo with bounded memory: the whole-image float tensors of ``finish`` would need
        ~76 bytes a pixel (8 GB for 108 MP); strips of rows need the uint8 input and output, the ab
        resized to full size (8 bytes a pixel) and one strip's floats. The model input comes from PIL's
        antialiased resize of the uint8 photo."""
        from PIL import Image
        height, width = image.shape[:2]
        pixels = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
        small = np.asarray(Image.fromarray(pixels).convert("RGB").resize(
            (self.image_size, self.image_size), Image.BILINEAR), np.float32) / 255.0
        l_model, _ = color.rgb_to_model(small[None])
        ab = self._resize_ab(np.asarray(self._predict(l_model.numpy(), maps), np.float32), tf.constant([height, width]))
        out = np.empty((height, width, 3), np.uint8)
        strip = max(1, STRIP_PIXELS // width)
        for top in range(0, height, strip):
            rows = slice(top, min(top + strip, height))
            out[rows] = self._finish_strip(image[rows], ab[0, rows]).numpy()
        return out

    def colorize(self, image, hints=None):
        """One uint8 photo, H x W, H x W x 1, x 3 or x 4 -> uint8 RGB H x W x 3 of the same size.

        ``hints`` (a model trained with them): a list of points, each {"x": X, "y": Y, "color": "#rrggbb"} or
        (x, y, colour), in the photo's pixel coordinates, the colour hex sRGB or three 0..255 integers; or a
        hints document ({"points": [...]}, as colour_hints.load reads a file). See colorgan/hints.py.
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        return self.colorize_batch(image[None], None if hints is None else [hints])[0]

    def _check_input(self, l):
        l = np.asarray(l, np.float32)
        expected = (self.image_size, self.image_size, 1)
        if l.ndim != 4 or l.shape[1:] != expected or not len(l):
            raise ValueError(f"predict_ab expects L of shape (B, {self.image_size}, {self.image_size}, 1) with "
                             f"B of 1 or more, got {l.shape}")
        if not np.isfinite(l).all():
            raise ValueError("predict_ab got L with NaN or infinite values; L must be normalised lightness, "
                             "L*/50 - 1 in [-1, 1]")
        return l

    def _check_hints(self, hints, batch):
        """Hint maps for predict_ab: zeros (no hints) for None; refused for a model without hints."""
        if hints is None:
            return np.zeros((batch, self.image_size, self.image_size, colour_hints.CHANNELS), np.float32)
        hints = np.asarray(hints, np.float32)
        expected = (batch, self.image_size, self.image_size, colour_hints.CHANNELS)
        if hints.shape != expected:
            raise ValueError(f"predict_ab expects hint maps of shape {expected}, got {hints.shape}")
        if not self.takes_hints and hints.any():
            raise ColorganError(f"the model {self.source} takes no colour hints; colour with a model trained "
                                "with them (colorgan train --config=hints_photos), or leave the hints out")
        return hints

    def __repr__(self):
        return f"{type(self).__name__}(image_size={self.image_size}, source={self.source!r})"


class KerasColorizer(Colorizer):
    """A Keras generator in memory (from a run, a checkpoint or a .keras file)."""
    kind = "keras"

    def __init__(self, model, image_size=None, source="<keras model>"):
        super().__init__(image_size or saving.input_size(model), source)
        self.model = model
        self.takes_hints = len(model.inputs) == 2
        self._call = tf.function(lambda *inputs: model(list(inputs) if self.takes_hints else inputs[0],
                                                       training=False), reduce_retracing=True)

    def predict_ab(self, l, hints=None):
        l = self._check_input(l)
        hints = self._check_hints(hints, len(l))
        return self._call(l, hints).numpy() if self.takes_hints else self._call(l).numpy()


class SavedModelColorizer(Colorizer):
    """A SavedModel written by colorgan.export; runs its `predict_ab` signature."""
    kind = "saved_model"

    def __init__(self, path):
        self.loaded = tf.saved_model.load(str(path))
        if "predict_ab" not in self.loaded.signatures:
            raise ColorganError(f"{path} is a SavedModel without a 'predict_ab' signature; "
                                "export it with `colorgan export --format=saved_model`")
        self._signature = self.loaded.signatures["predict_ab"]
        inputs = self._signature.structured_input_signature[1]
        super().__init__(inputs["l"].shape[1], path)
        self.takes_hints = "hints" in inputs

    def predict_ab(self, l, hints=None):
        l = self._check_input(l)
        hints = self._check_hints(hints, len(l))
        extra = {"hints": tf.constant(hints)} if self.takes_hints else {}
        return self._signature(l=tf.constant(l), **extra)["ab"].numpy()


class TFLiteColorizer(Colorizer):
    """A .tflite generator run with the LiteRT interpreter, float or fully quantised."""
    kind = "tflite"

    def __init__(self, path, num_threads=None, model_content=None):
        """From a .tflite file, or from its bytes (`model_content`, with `path` only naming it)."""
        from ai_edge_litert.interpreter import Interpreter
        model = {"model_content": model_content} if model_content is not None else {"model_path": str(path)}
        try:
            self.interpreter = Interpreter(**model, num_threads=num_threads or os.cpu_count())
        except ValueError as e:
            raise ColorganError(f"{path} is not a valid .tflite model ({e}); "
                                "convert one with `colorgan export --format=tflite`") from None
        self.interpreter.allocate_tensors()
        inputs = self.interpreter.get_input_details()
        (self._output,) = self.interpreter.get_output_details()
        # A model with hints has two inputs, "l" and "hints" (colorgan.export.convert_tflite names them).
        self._hints = next((d for d in inputs if "hints" in d["name"]), None)
        (self._input,) = [d for d in inputs if d is not self._hints]
        self.takes_hints = self._hints is not None
        super().__init__(self._input["shape"][1], path)

    @staticmethod
    def _quantize(x, detail):
        scale, zero_point = detail["quantization"]
        if not scale:  # a float tensor
            return x.astype(detail["dtype"])
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])

    @staticmethod
    def _dequantize(q, detail):
        scale, zero_point = detail["quantization"]
        if not scale:
            return q.astype(np.float32)
        return (q.astype(np.float32) - zero_point) * scale

    def predict_ab(self, l, hints=None):
        # The phone model is converted for batch 1, as phones run it; a batch is run photo by photo.
        outputs = []
        l = self._check_input(l)
        for single, maps in zip(l, self._check_hints(hints, len(l))):
            self.interpreter.set_tensor(self._input["index"], self._quantize(single[None], self._input))
            if self.takes_hints:
                self.interpreter.set_tensor(self._hints["index"], self._quantize(maps[None], self._hints))
            self.interpreter.invoke()
            outputs.append(self._dequantize(self.interpreter.get_tensor(self._output["index"]), self._output))
        return np.concatenate(outputs, axis=0)


class ONNXColorizer(Colorizer):
    """A .onnx generator (`colorgan export --format=onnx`: "l" [N, S, S, 1], with hints also "hints"
    [N, S, S, 3] -> "ab") run by ONNX Runtime."""
    kind = "onnx"

    def __init__(self, path, model_content=None):
        """From a .onnx file, or from its bytes (`model_content`, with `path` only naming it)."""
        try:
            import onnxruntime
        except ImportError:
            raise ColorganError(f"{path}: running ONNX models needs onnxruntime: pip install "
                                "'colorgan[onnx]'") from None
        try:
            self.session = onnxruntime.InferenceSession(
                str(path) if model_content is None else model_content, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) share no base
            raise ColorganError(f"{path} is not a valid ONNX model ({e}); "
                                "convert one with `colorgan export --format=onnx`") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.takes_hints = "hints" in inputs
        super().__init__(inputs["l"].shape[1], path)

    def predict_ab(self, l, hints=None):
        l = self._check_input(l)
        feed = {"l": l, **({"hints": self._check_hints(hints, len(l))} if self.takes_hints else {})}
        return self.session.run(["ab"], feed)[0]


def saved_model_version_dir(path):
    """`OUT/NAME/VERSION` as given, or the highest numeric VERSION under `OUT/NAME`; None otherwise."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        if versions:
            return max(versions, key=lambda p: int(p.name))
    return None


class SaturatedColorizer(Colorizer):
    """Another colorizer with its colour turned up or down: a*b* times ``saturation`` (clipped to the
    model's range), the lightness still the photo's own. Training's colour terms mostly learn such a gain
    (models/MODEL_CARD.md, "One curve"), so this picks a livelier or duller point on the same
    PSNR-colourfulness curve without training: the shipped model at 1.25 is about as colourful as 1,000
    more steps of the colourfulness term. Out-of-gamut results lose chroma as everywhere."""

    def __init__(self, colorizer, saturation):
        check_saturation(saturation)
        super().__init__(colorizer.image_size, colorizer.source)
        self.colorizer, self.saturation, self.kind = colorizer, float(saturation), colorizer.kind
        self.takes_hints = colorizer.takes_hints

    def predict_ab(self, l, hints=None):
        ab = self.colorizer.predict_ab(l) if hints is None else self.colorizer.predict_ab(l, hints)
        return np.clip(np.asarray(ab, np.float32) * self.saturation, -1.0, 1.0)


def check_saturation(saturation):
    if not saturation >= 0.0:  # also refuses NaN
        raise ColorganError(f"--saturation must be 0 (gray) or more (1: the model's own colour), got {saturation}")


def load_colorizer(spec=None, saturation=1.0):
    """A Colorizer from a run dir, a checkpoint, a `.keras` file, a SavedModel or a `.tflite` file.

    SavedModels may be given as `OUT/NAME/VERSION` or as `OUT/NAME` (the highest VERSION wins).
    A Keras model object is accepted too. None means the colorizer that ships with colorgan.
    ``saturation`` other than 1 scales its colour (``SaturatedColorizer``).
    """
    check_saturation(saturation)
    colorizer = _load_colorizer(spec)
    return colorizer if saturation == 1.0 else SaturatedColorizer(colorizer, saturation)


def _load_colorizer(spec):
    import keras

    if spec is None:
        return KerasColorizer(*saving.load_generator(), source="colorgan (shipped model)")
    if isinstance(spec, keras.Model):
        return KerasColorizer(spec)
    path = pathlib.Path(spec)
    if not path.exists() and not pathlib.Path(f"{path}.index").exists():  # a checkpoint prefix is no file
        raise ColorganError(f"no model at {path}: pass a training run dir, a checkpoint, a .keras file, "
                            "a SavedModel dir or a .tflite file")
    if path.suffix == ".tflite":
        if not path.is_file():
            raise ColorganError(f"no TFLite model at {path}; check the path or convert one with "
                                "`colorgan export --format=tflite`")
        return TFLiteColorizer(path)
    if path.suffix == ".onnx" and path.is_file():
        return ONNXColorizer(path)
    saved_model = saved_model_version_dir(path)
    if saved_model is not None:
        return SavedModelColorizer(saved_model)
    if path.suffix == ".index":  # a checkpoint named by its index file: the prefix is what TF wants
        path = path.with_suffix("")
    elif path.is_file() and path.suffix != ".keras":
        raise ColorganError(f"{path} is not a model: pass a training run dir, a checkpoint, a .keras file, "
                            "a SavedModel dir or a .tflite file")
    # Run dirs, checkpoints and .keras files: the saving module knows how to rebuild the generator.
    model, image_size = saving.load_generator(str(path))
    return KerasColorizer(model, image_size, source=path)


def read_metadata(path):
    """The JSON written beside a .tflite or inside a SavedModel, or {} when there is none."""
    path = pathlib.Path(path)
    candidates = [path.with_suffix(METADATA_SUFFIX)] if path.suffix == ".tflite" else []
    version_dir = saved_model_version_dir(path)
    if version_dir is not None:
        candidates.append(version_dir / SAVED_MODEL_METADATA)
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}
