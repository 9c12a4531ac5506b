"""Colour hints: points of a photo with the colour the user says they had (Zhang et al., SIGGRAPH 2017).

A hint is a point (x, y) of the photo in its own pixel coordinates, x from the left edge and y from the top
edge: the point names the pixel (floor(x), floor(y)), so 0 <= x < width and 0 <= y < height. Its colour is
sRGB, written as hex ("#b3261e" or "#b32"). What the model is told is that colour's a*b* at the photo's
own L* there, pulled towards gray at constant L* and hue until it exists in sRGB (``color.ab_in_gamut``):
a bright yellow picked for a dark pixel means the darkest yellow that pixel can be.

A hints file is JSON (the web page downloads the same):

    {"points": [{"x": 412, "y": 230, "color": "#b3261e"},
                {"x": 96.5, "y": 301, "color": "#2f6fb2"}],
     "width": 640, "height": 480}

``width`` and ``height`` are optional: when given, hints made for a photo of another size are refused.

The generator sees the hints as three maps at its input size S x S (``maps``): a*/110 and b*/110 at the
hinted pixels, 0 elsewhere, and a mask, 1 at the hinted pixels. A point lands in model pixel
(floor(x S / width), floor(y S / height)); points sharing one average their a*b*.

Training simulates hints from the photo's true colours (``simulate``): none for ``none_share`` of the
photos, else a geometric number of points at random places, each carrying the true a*b* averaged over a
random square patch. Evaluation samples N per photo with a fixed seed (``sample``).
"""
import dataclasses
import json
import math
import re
import zlib

import numpy as np
import tensorflow as tf

from colorgan import color
from colorgan.errors import ColorganError

CHANNELS = 3            # a*/110, b*/110, mask
MAX_POINTS = 64         # per photo; a photo needing more is not one the model was trained for
EXAMPLE = '{"points": [{"x": 412, "y": 230, "color": "#b3261e"}]}'
EVAL_PATCH = 5          # evaluate --hints: each hint's colour is the true a*b* averaged over this square
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


@dataclasses.dataclass(frozen=True)
class Point:
    """One hint as the user gives it: photo pixel coordinates and an sRGB colour (three 0..255 ints)."""
    x: float
    y: float
    rgb: tuple

    @property
    def hex(self):
        return "#" + "".join(f"{c:02x}" for c in self.rgb)


def parse_color(value, where="a hint"):
    """'#rrggbb', '#rgb' (the '#' optional) or three 0..255 integers -> (r, g, b)."""
    if isinstance(value, str):
        match = _HEX.fullmatch(value.strip())
        if match:
            digits = match[1] if len(match[1]) == 6 else "".join(c * 2 for c in match[1])
            return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
    elif (isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3
          and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
        return tuple(int(c) for c in value)
    raise ColorganError(f"{where}: {value!r} is not a colour; write it as hex sRGB, \"#rrggbb\" or \"#rgb\" "
                        "(e.g. \"#b3261e\")")


def _number(value, what, where):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ColorganError(f"{where}: {what} must be a number of pixels, got {value!r}; write points as "
                            f"{EXAMPLE}")
    return float(value)


def parse_points(hints, name="hints"):
    """The user's hints -> a list of Points, their form and colours checked (not yet against a photo).

    ``hints``: a list of points, each {"x": X, "y": Y, "color": COLOUR} or a tuple (x, y, colour), or the
    document {"points": [...], "width": W, "height": H} (the JSON file's form); a colour is hex sRGB or
    three 0..255 integers. ``name`` heads the error message (the file's name, say).
    """
    if isinstance(hints, dict):
        if not isinstance(hints.get("points"), list):
            raise ColorganError(f"{name}: expected an object with a \"points\" list, like {EXAMPLE}")
        hints = hints["points"]
    if not isinstance(hints, (list, tuple)):
        raise ColorganError(f"{name}: expected a list of points, like {EXAMPLE}")
    if len(hints) > MAX_POINTS:
        raise ColorganError(f"{name}: {len(hints)} points are too many; a photo takes at most {MAX_POINTS} hints")
    points = []
    for i, point in enumerate(hints):
        where = f"{name}: point {i + 1}"
        if isinstance(point, Point):
            points.append(point)
            continue
        if isinstance(point, dict):
            missing = [key for key in ("x", "y", "color") if key not in point]
            if missing:
                raise ColorganError(f"{where} has no {' or '.join(missing)}; write points as {EXAMPLE}")
            x, y, colour = point["x"], point["y"], point["color"]
        elif isinstance(point, (list, tuple)) and len(point) == 3:
            x, y, colour = point
        else:
            raise ColorganError(f"{where} is {point!r}; write points as {EXAMPLE}")
        points.append(Point(_number(x, "x", where), _number(y, "y", where), parse_color(colour, where)))
    return points


def size_of(document, name="hints"):
    """The (width, height) a hints document was made for, or None when it does not say."""
    if not isinstance(document, dict) or ("width" not in document and "height" not in document):
        return None
    width, height = document.get("width"), document.get("height")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise ColorganError(f"{name}: \"width\" and \"height\" are the photo's size in pixels, two whole "
                            f"numbers, got {width!r} and {height!r}; or leave both out")
    return width, height


def loads(text, name="hints"):
    """A hints JSON document (str or bytes) -> the document, checked: {"points": [Point, ...]} and the
    "width" and "height" it gives."""
    try:
        document = json.loads(text, parse_constant=lambda constant: float("nan"))
    except json.JSONDecodeError as e:
        raise ColorganError(f"{name}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                            f"write it as {EXAMPLE}") from None
    except (UnicodeDecodeError, RecursionError):
        raise ColorganError(f"{name}: not valid JSON text; write it as {EXAMPLE}") from None
    if not isinstance(document, dict):
        raise ColorganError(f"{name}: expected an object with a \"points\" list, like {EXAMPLE}")
    size = size_of(document, name)
    checked = {"points": parse_points(document, name)}
    return checked if size is None else {**checked, "width": size[0], "height": size[1]}


def load(path):
    """A hints JSON file -> its document, checked (``loads``)."""
    try:
        with open(path, "rb") as f:
            text = f.read(1_000_001)
    except OSError as e:
        raise ColorganError(f"cannot read the hints file {path} ({e.strerror or e}); check --hints") from None
    if len(text) > 1_000_000:
        raise ColorganError(f"the hints file {path} is over 1 MB; a hints file holds at most {MAX_POINTS} points")
    return loads(text, str(path))


def check_inside(points, width, height, name="hints"):
    for i, p in enumerate(points):
        if not (0 <= p.x < width and 0 <= p.y < height):
            raise ColorganError(f"{name}: point {i + 1} (x={p.x:g}, y={p.y:g}) is outside the {width}x{height} "
                                f"photo; x must be from 0 to under {width} and y from 0 to under {height}, in "
                                "pixels from its top-left corner")


# --------------------------------------------------------------------------------------------------
# Hints resolved against a photo, and the maps the generator sees


def ab_at_lightness(rgb, lightness):
    """sRGB colours (..., 3) of 0..255 and the photo's L* where each goes (...) -> their a*b* (..., 2) at that
    L*, pulled into the sRGB gamut at constant L* and hue. In TF, so that the SavedModel runs it too."""
    lab = color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0)
    return tf.stack(color.ab_in_gamut(lightness, lab[..., 1], lab[..., 2]), axis=-1)


def scatter_maps(rows, cols, ab, weight, size):
    """Hint maps (B, S, S, 3) from K points a photo: model pixels ``rows``, ``cols`` (B, K) int, a*b* in model
    units ``ab`` (B, K, 2) and ``weight`` (B, K), 1 for a point and 0 for padding. Points sharing a pixel
    average their a*b*."""
    batch = tf.shape(rows)[0]
    photo = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(rows))
    indices = tf.stack([photo, tf.cast(rows, tf.int32), tf.cast(cols, tf.int32)], axis=-1)
    weight = tf.cast(weight, tf.float32)[..., None]
    sums = tf.tensor_scatter_nd_add(tf.zeros(tf.stack([batch, size, size, CHANNELS])), indices,
                                    tf.concat([tf.cast(ab, tf.float32) * weight, weight], axis=-1))
    count = sums[..., 2:]
    return tf.concat([sums[..., :2] / tf.maximum(count, 1.0), tf.minimum(count, 1.0)], axis=-1)


def model_pixels(x, y, width, height, size):
    """Photo coordinates -> the model pixel (row, col) at S x S that holds them."""
    col = tf.minimum(tf.cast(tf.floor(tf.cast(x, tf.float32) * size / tf.cast(width, tf.float32)), tf.int32), size - 1)
    row = tf.minimum(tf.cast(tf.floor(tf.cast(y, tf.float32) * size / tf.cast(height, tf.float32)), tf.int32), size - 1)
    return row, col


@dataclasses.dataclass
class Hints:
    """Hints resolved against one photo: points (K, 2) as (x, y) in its pixels, their a*b* (K, 2) in Lab
    units, and the photo's size."""
    xy: np.ndarray
    ab: np.ndarray
    width: int
    height: int

    def __len__(self):
        return len(self.xy)

    def maps(self, size):
        """The generator's hint maps for this photo at S x S: float32 (S, S, 3)."""
        if not len(self):
            return np.zeros((size, size, CHANNELS), np.float32)
        row, col = model_pixels(self.xy[:, 0], self.xy[:, 1], self.width, self.height, size)
        return scatter_maps(row[None], col[None], (self.ab / color.AB_SCALE)[None],
                            tf.ones([1, len(self)]), size)[0].numpy()


def resolve(hints, image, name="hints"):
    """The user's hints (any form ``parse_points`` takes, a loaded document, or Hints) for one
    uint8 photo (H, W, C) -> Hints: each point checked to lie in the photo, its colour's a*b* taken at the
    photo's own L* there."""
    height, width = np.shape(image)[:2]
    if isinstance(hints, Hints):
        if (hints.width, hints.height) != (width, height):
            raise ColorganError(f"{name}: resolved for a {hints.width}x{hints.height} photo, not this "
                                f"{width}x{height} one")
        return hints
    size = size_of(hints, name)
    if size is not None and tuple(size) != (width, height):
        raise ColorganError(f"{name}: made for a {size[0]}x{size[1]} photo, not this {width}x{height} one; "
                            "make them on this photo (the web page's Download hints) or leave width and height out")
    points = parse_points(hints, name)
    check_inside(points, width, height, name)
    if not points:
        return Hints(np.zeros((0, 2)), np.zeros((0, 2), np.float32), width, height)
    xy = np.array([(p.x, p.y) for p in points], np.float64)
    image = np.asarray(image)
    pixels = (image if image.ndim == 3 else image[..., None])[xy[:, 1].astype(int), xy[:, 0].astype(int)]
    rgb8 = np.broadcast_to(pixels[..., :3], (len(points), 3))  # a gray photo's one channel as three
    lightness = color.lightness_of_srgb8(tf.constant(rgb8))[..., 0]
    ab = ab_at_lightness(np.array([p.rgb for p in points]), lightness).numpy()
    return Hints(xy, ab, width, height)


def sample(rgb, count, seed, name="", patch=EVAL_PATCH):
    """``count`` hints of the real colours of a uint8 RGB photo, as evaluation draws them: places uniform over
    the photo, each colour the true a*b* averaged over a ``patch`` x ``patch`` square (cut at the edges). The
    draw depends only on ``seed`` and the photo's ``name``, so every model meets the same hints."""
    height, width = rgb.shape[:2]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    xs, ys = rng.integers(0, width, count), rng.integers(0, height, count)
    ab = color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0).numpy()[..., 1:]
    half = patch // 2
    means = [ab[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1].reshape(-1, 2).mean(0)
             for x, y in zip(xs, ys)]
    return Hints(np.stack([xs, ys], -1).astype(np.float64), np.array(means, np.float32).reshape(-1, 2),
                 width, height)


# --------------------------------------------------------------------------------------------------
# Simulated hints for training (TF, inside the compiled step)


def simulate(ab, seed, none_share=0.5, p=0.125, max_patch=9, count=None, max_points=MAX_POINTS):
    """Hint maps (B, S, S, 3) for a batch of true colours ``ab`` (B, S, S, 2), model units, as Zhang et al.
    train: a photo gets no hint with probability ``none_share``, else 1 + Geometric(p) points (mean 1/p,
    at most ``max_points``), or exactly ``count`` each when given. Each point sits at a uniformly random
    pixel and carries the true a*b* averaged over a square of odd side from 1 to ``max_patch``, uniformly
    drawn. ``seed``: a stateless seed, shape [2]; the same seed gives the same hints."""
    ab = tf.cast(ab, tf.float32)
    batch, size = tf.shape(ab)[0], ab.shape[1]
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6))
    if count is None:
        none = tf.random.stateless_uniform([batch], seeds[0]) < none_share
        u = tf.random.stateless_uniform([batch], seeds[1], minval=1e-7, maxval=1.0)
        geometric = 1.0 + tf.floor(tf.math.log(u) / math.log(1.0 - p)) if p < 1 else tf.ones([batch])
        n = tf.where(none, 0, tf.cast(tf.minimum(geometric, max_points), tf.int32))
    else:
        n, max_points = tf.fill([batch], int(count)), int(count)
    rows = tf.random.stateless_uniform([batch, max_points], seeds[2], 0, size, tf.int32)
    cols = tf.random.stateless_uniform([batch, max_points], seeds[3], 0, size, tf.int32)
    sides = list(range(1, max_patch + 1, 2))
    which = tf.random.stateless_uniform([batch, max_points], seeds[4], 0, len(sides), tf.int32)
    # The true a*b* averaged over each patch side, at every pixel (padding left out of the means).
    patches = tf.stack([tf.nn.avg_pool2d(ab, side, 1, "SAME") for side in sides], axis=1)
    photo = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(rows))
    values = tf.gather_nd(patches, tf.stack([photo, which, rows, cols], axis=-1))
    weight = tf.cast(tf.range(max_points)[None] < n[:, None], tf.float32)
    return scatter_maps(rows, cols, values, weight, size)
