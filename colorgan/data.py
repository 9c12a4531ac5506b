"""Input pipelines: photos from TFDS, a folder, or the packages themselves, as normalised (L, ab) batches.

One string picks the source:
  ``tfds:NAME``    any TFDS image dataset, e.g. ``tfds:coco/2017`` (``download=False`` unless asked);
  ``folder:PATH``  every jpg/png/bmp/gif/webp below PATH, split by a fixed hash of the relative path;
  ``samples``      the colour photos that ship inside installed packages (the offline default).

File sources are read by *index*: element ``i`` of the stream is file ``shuffle(i mod N)`` of epoch
``i // N``, with its random crop and flip seeded by ``(seed, i)``. The stream is therefore a pure function
of ``(seed, i)``: a resumed run restarts it at the index it had reached, and two runs with
``deterministic=True`` see identical batches. Unreadable files are dropped with ``ignore_errors`` and
counted by the gap they leave in the index sequence; every map keeps its order (while still running in
parallel), so the counts and the resume position hold whatever the ``deterministic`` option says.
"""
import hashlib
import importlib.util
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from colorgan import color, photos
from colorgan.errors import ColorganError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLITS = ("train", "val", "all")

# Real colour photographs bundled with packages, as (module, folder inside it, files).
# matplotlib is a runtime dependency; scikit-image and scikit-learn add more photos when installed.
SAMPLE_PHOTOS = (
    ("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")),
    ("skimage", "data", ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
                         "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg")),
    ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
)

# Mean |R-G| + |G-B| below this (on a [0, 1] scale) means a grayscale photo, even if stored as RGB.
GRAY_CHROMA_THRESHOLD = 0.01


def decode_image(contents):
    """Encoded bytes of any supported format -> float32 RGB in [0, 1], shape (H, W, 3), upright.

    Grayscale, RGBA, palette, 16-bit PNG, CMYK JPEG, WebP and animated GIF (first frame) all come out
    as 3-channel RGB. Corrupt, truncated or empty data raises ``tf.errors.InvalidArgumentError``.
    """
    return tf.image.convert_image_dtype(decode_uint8(contents), tf.float32)


def decode_uint8(contents):
    """Encoded bytes -> uint8 RGB (H, W, 3), turned upright by its EXIF orientation as inference does
    (a phone photo stored sideways trains as the picture people see)."""
    # JPEG with the accurate integer DCT: the same pixels as libjpeg/PIL, which evaluation and
    # inference use. Everything else as uint8, the one dtype every decoder accepts (WebP refuses
    # float); 16-bit PNG is scaled down.
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.ensure_shape(tf.io.decode_image(contents, channels=3, dtype=tf.uint8,
                                                   expand_animations=False), [None, None, 3]))
    tf.debugging.assert_positive(tf.size(image), message="empty image")
    return photos.apply_exif_orientation(image, photos.exif_orientation(contents))


def is_grayscale(rgb):
    """True where an RGB image carries no colour (all channels about equal)."""
    chroma = tf.abs(rgb[..., 0] - rgb[..., 1]) + tf.abs(rgb[..., 1] - rgb[..., 2])
    return tf.reduce_mean(chroma) < GRAY_CHROMA_THRESHOLD


def resize_shorter_side(rgb, size):
    """Resize so that the shorter side is ``size``, keeping the aspect ratio."""
    shape = tf.cast(tf.shape(rgb)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    return tf.image.resize(rgb, new_shape, method="bilinear", antialias=True)


def center_crop(rgb, size):
    """The central ``size`` x ``size`` square of an image whose shorter side is at least ``size``."""
    shape = tf.shape(rgb)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return rgb[top:top + size, left:left + size, :]


def train_transform(rgb, image_size, seed):
    """Random crop of the shorter-side-resized photo and a random horizontal flip, seeded by ``seed``."""
    rgb = resize_shorter_side(rgb, image_size)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    rgb = tf.image.stateless_random_crop(rgb, [image_size, image_size, 3], seed=crop_seed)
    rgb = tf.image.stateless_random_flip_left_right(rgb, seed=flip_seed)
    return tf.clip_by_value(rgb, 0.0, 1.0)


def eval_transform(rgb, image_size, resize="center_crop"):
    """No randomness: the shorter side resized and the centre cropped, or (``straight``, evaluate.py's
    protocol) the whole photo resized to a square, bicubic."""
    if resize == "straight":
        rgb = tf.image.resize(rgb, [image_size, image_size], method="bicubic", antialias=True)
    else:
        rgb = center_crop(resize_shorter_side(rgb, image_size), image_size)
    return tf.clip_by_value(rgb, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Sources


def parse_source(source):
    """'tfds:NAME' | 'folder:PATH' | 'samples' -> (kind, argument)."""
    kind, _, arg = str(source).partition(":")
    if kind == "samples" and not arg:
        return "samples", ""
    if kind in ("tfds", "folder") and arg:
        return kind, arg
    raise ColorganError(f"unknown data source {source!r}: use 'samples', 'folder:PATH' or 'tfds:NAME' "
                        "(for example tfds:coco/2017)")


def list_images(folder):
    """Every image file below ``folder`` (recursive, any-case extension), sorted, symlink loops skipped."""
    if not os.path.isdir(folder):
        raise ColorganError(f"image folder {folder!r} does not exist: check the path given to folder:PATH")
    found, seen_dirs = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:  # a symlink loop (or a second link to the same folder)
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def _unit_hash(text):
    """A fixed number in [0, 1) for a text, the same on every run and machine."""
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(relative_path, val_share):
    """'train' or 'val' for a file, from a fixed hash of its relative path, the same on every run."""
    return "val" if _unit_hash(relative_path.replace(os.sep, "/")) < val_share else "train"


def source_of(relative_path):
    """A photo's source: its first folder below the data folder, or for a photo at the top its file name
    up to the first '_' or its extension (``../shared/data`` names files ``clothing_...``, ``pets_...``)."""
    parts = relative_path.replace(os.sep, "/").split("/")
    return parts[0] if len(parts) > 1 else os.path.splitext(parts[0])[0].split("_", 1)[0]


def parse_source_weights(text):
    """'clothing=0.5,pets=2' -> {'clothing': 0.5, 'pets': 2.0}; every weight a non-negative number."""
    weights = {}
    for item in filter(None, (t.strip() for t in str(text).split(","))):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            weights[name.strip()] = -1.0
        if not name.strip() or not weights[name.strip()] >= 0:
            raise ColorganError(f"bad source weight {item!r}: write --source_weights=SOURCE=WEIGHT,... with "
                                "weights of 0 or more (0 leaves a source out)")
    return weights


def weight_sources(files, base, weights):
    """An epoch with each source's photos ``weight`` times over: the whole part of a weight repeats every
    photo of the source, the fraction keeps that share of them (chosen by a fixed hash of the path)."""
    relative = [os.path.relpath(f, base) if base else os.path.basename(f) for f in files]
    sources = [source_of(r) for r in relative]
    unknown = sorted(set(weights) - set(sources))
    if unknown:
        raise ColorganError(f"--source_weights names {', '.join(unknown)}, not a source of this data; its "
                            f"sources are {', '.join(sorted(set(sources)))}")
    weighted = []
    for path, rel, source in zip(files, relative, sources):
        w = weights.get(source, 1.0)
        weighted += [path] * (int(w) + (_unit_hash("weight:" + rel) < w - int(w)))
    if not weighted:
        raise ColorganError("--source_weights leaves no photo to train on: give some source a weight above 0")
    return weighted


def sample_photo_files():
    """Paths of the colour photos shipped inside the installed packages."""
    paths = []
    for module, folder, names in SAMPLE_PHOTOS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        base = os.path.join(list(spec.submodule_search_locations)[0], folder)
        paths += [os.path.join(base, n) for n in names if os.path.isfile(os.path.join(base, n))]
    return paths


def source_files(source, split="all", val_share=0.05, weights=None):
    """The image files of a file-based source ('folder:PATH' or 'samples') that belong to ``split``,
    repeated or thinned per source by ``weights`` (``weight_sources``) when given."""
    if split not in SPLITS:
        raise ColorganError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    kind, arg = parse_source(source)
    if kind == "tfds":
        raise ColorganError(f"{source} is a TFDS dataset, not a set of files: use make_dataset for it")
    if kind == "samples":
        files, base = sample_photo_files(), None
        # So few photos that a hash split could leave validation empty: take every fifth one instead.
        if split != "all":
            files = [f for i, f in enumerate(files) if (i % 5 == 4) == (split == "val")]
    else:
        files, base = list_images(arg), arg
        if split != "all":
            files = [f for f in files if split_of(os.path.relpath(f, base), val_share) == split]
    if not files:
        where = "the installed packages" if kind == "samples" else repr(arg)
        raise ColorganError(f"no images for split {split!r} in {where}: add jpg/png/bmp/gif/webp files "
                            "there, or change --val_share")
    return weight_sources(files, base, weights) if weights else files


def count_examples(source, split, val_share=0.05, download=False, data_dir=None, weights=None):
    """Photos in a source's split, checked before any work starts: a missing dataset fails here.

    For TFDS this reads only the dataset's metadata; None if it will be downloaded on first use.
    """
    kind, arg = parse_source(source)
    if kind != "tfds":
        return len(source_files(source, split, val_share, weights))
    if weights:
        raise ColorganError(f"--source_weights applies to folder sources, not to the TFDS dataset {arg!r}")
    builder = _tfds_builder(arg, data_dir)
    if not builder.is_prepared():
        if download:
            return None
        raise _missing_tfds(arg, _TFDS_SPLITS[split], "not downloaded")
    return sum(builder.info.splits[s].num_examples for s in _TFDS_SPLITS[split].split("+"))


_TFDS_SPLITS = {"train": "train", "val": "validation", "all": "train+validation"}


def _missing_tfds(name, split, why):
    return ColorganError(
        f"TFDS dataset {name!r} ({split}) is not available locally ({why}); fetch it with: "
        f"python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', split='{split}')\"  "
        "(or pass --download), or use --data=folder:PATH")


def _tfds_builder(name, data_dir):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ColorganError(f"unknown TFDS dataset {name!r}: see `tfds build --help` or "
                            "https://www.tensorflow.org/datasets/catalog for names") from None


def load_tfds(name, split, download=False, data_dir=None, shuffle_seed=None, shard=(1, 0)):
    """A TFDS split as a dataset of encoded photos (the bytes TFDS stores), in a fixed order.

    Photos stay encoded until the pipeline crops them: a shuffle buffer of bytes is a tenth of one of
    pixels, and a resumed run can pass over what it had read without decoding it.
    shuffle_seed: read the files in an order drawn from it (a fresh one each epoch), so that training
        does not rely on a small shuffle buffer alone to mix 100k photos stored in order.
    shard: (workers, this worker) to read only this worker's share of the files, when the dataset has
        at least that many files; otherwise every worker reads all and keeps every n-th photo.
    """
    tfds_split = _TFDS_SPLITS[split]
    builder = _tfds_builder(name, data_dir)
    workers, worker = shard
    by_file = workers > 1 and builder.is_prepared() and min(
        len(builder.info.splits[s].file_instructions) for s in tfds_split.split("+")) >= workers
    in_order = tf.data.Options()
    in_order.deterministic = True  # the files' interleaving too: the stream is a function of the seed
    read_config = tfds.ReadConfig(
        shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=True, options=in_order,
        input_context=tf.distribute.InputContext(workers, worker, workers) if by_file else None)
    try:
        ds = tfds.load(name, split=tfds_split, download=download, data_dir=data_dir,
                       shuffle_files=shuffle_seed is not None, read_config=read_config,
                       decoders={"image": tfds.decode.SkipDecoding()})
    except (AssertionError, FileNotFoundError) as e:
        raise _missing_tfds(name, tfds_split, str(e).splitlines()[0][:120]) from None
    if workers > 1 and not by_file:
        ds = ds.shard(workers, worker)
    return ds.map(lambda example: example["image"])


# --------------------------------------------------------------------------------------------------
# The pipeline


def decoded_photos(files):
    """image_of(i): photo ``i`` as float RGB, from one flat uint8 buffer of every photo decoded once.

    An unreadable file has no pixels; asking for it raises, as decoding it would, so the stream drops
    and counts it the same way. uint8 holds 4x less than float and decodes to exactly the same values.
    """
    import numpy as np

    paths = tf.constant(files)
    decoded = tf.data.Dataset.range(len(files)).map(
        lambda i: (i, decode_uint8(tf.io.read_file(tf.gather(paths, i)))),
        num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    offsets = np.full(len(files), -1, np.int64)
    shapes = np.zeros((len(files), 3), np.int64)
    pieces, position = [], 0
    for i, image in decoded.as_numpy_iterator():
        offsets[i], shapes[i] = position, image.shape
        pieces.append(image.reshape(-1))
        position += image.size
    flat = np.concatenate(pieces) if pieces else np.zeros(0, np.uint8)
    pieces.clear()  # at most two copies of every pixel at once: the flat array, then the tensor
    pixels = tf.constant(flat)
    del flat
    offsets, shapes = tf.constant(offsets), tf.constant(shapes)

    def image_of(i):
        tf.debugging.assert_non_negative(offsets[i], message="unreadable image")
        size = tf.reduce_prod(shapes[i])
        image = tf.reshape(pixels[offsets[i]:offsets[i] + size], shapes[i])
        return tf.image.convert_image_dtype(image, tf.float32)
    return image_of


def _file_stream(files, image_size, training, seed, start_index, shard, cache, resize):
    """Dataset of (rgb, index): the image at each stream index, errors dropped."""
    n = len(files)
    paths = tf.constant(files)
    if cache:
        # Decode every photo once and hold the pixels: a step then only crops, flips and converts. A photo
        # that an epoch holds twice (--source_weights) is held once.
        unique, position = np.unique(np.array(files), return_inverse=True)
        decoded, position = decoded_photos(list(unique)), tf.constant(position, tf.int64)
        image_of = lambda i: decoded(tf.gather(position, i))
    else:
        image_of = lambda i: decode_image(tf.io.read_file(tf.gather(paths, i)))

    if training:
        num_workers, worker = shard
        indices = tf.data.Dataset.range(start_index + worker, 2 ** 62, num_workers)
    else:
        indices = tf.data.Dataset.range(n)

    def load(index):
        if training:
            epoch = index // n
            file_index = tf.random.experimental.index_shuffle(
                index % n, tf.stack([tf.cast(seed, tf.int64), epoch]), n - 1)
            rgb = train_transform(image_of(file_index), image_size, tf.stack([tf.cast(seed, tf.int64), index]))
        else:
            rgb = eval_transform(image_of(index), image_size, resize)
        return rgb, index

    # In order, still parallel: skip counting and the resume position read the order of the indices.
    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()


def is_dull(rgb, min_colourfulness):
    """True for a grayscale photo, and for one whose colourfulness is below ``min_colourfulness`` (sepia
    and faded prints, which teach a colorizer to hedge towards brown)."""
    if not min_colourfulness:
        return is_grayscale(rgb)
    return is_grayscale(rgb) | (color.colourfulness(rgb[None])[0] < min_colourfulness)


def _count_skips(stream, first_index, stride, skip_gray, epoch_size, min_colourfulness=0.0):
    """Attach counts of unreadable and grayscale (or dull) files to each element: cumulative, and within
    its epoch.

    A stream's indices advance by ``stride``; an unreadable file leaves a gap that ``scan`` turns into
    a running count, with no side effect, so the counts survive replay and distribution. The counts
    within the element's own epoch let the training loop close each epoch's tally exactly.
    """
    def step(state, element):
        rgb, index = element
        last_index, unreadable, gray, unreadable_in_epoch, gray_in_epoch = state
        missing = (index - last_index) // stride - 1
        epoch_start = index // epoch_size * epoch_size
        # Missing indices at or after this epoch's start belong to it; earlier ones to past epochs.
        first_missing = last_index + stride
        missing_here = tf.maximum(tf.constant(0, tf.int64),
                                  (index - tf.maximum(first_missing, epoch_start) + stride - 1) // stride)
        new_epoch = last_index < epoch_start
        unreadable_in_epoch = tf.where(new_epoch, missing_here, unreadable_in_epoch + missing)
        gray_in_epoch = tf.where(new_epoch, tf.constant(0, tf.int64), gray_in_epoch)
        gray_now = tf.cast(is_dull(rgb, min_colourfulness), tf.int64) if skip_gray else tf.constant(0, tf.int64)
        unreadable += missing
        gray += gray_now
        gray_in_epoch += gray_now
        stats = {"index": index, "unreadable": unreadable, "gray": gray, "is_gray": gray_now,
                 "unreadable_in_epoch": unreadable_in_epoch, "gray_in_epoch": gray_in_epoch}
        return (index, unreadable, gray, unreadable_in_epoch, gray_in_epoch), (rgb, stats)

    zero = tf.constant(0, tf.int64)
    return stream.scan((tf.constant(first_index - stride, tf.int64), zero, zero, zero, zero), step)


def make_dataset(source, split, image_size, batch_size, training, *, val_share=0.05, seed=0,
                 deterministic=False, cache=False, skip_gray=None, start_index=0, with_stats=False,
                 shard=(1, 0), download=False, data_dir=None, drop_remainder=None, min_colourfulness=0.0,
                 resize="center_crop", source_weights=None):
    """A ``tf.data.Dataset`` of normalised ``(L, ab)`` batches, shaped (B, S, S, 1) and (B, S, S, 2).

    training: random crop and flip, an endless stream in a fresh order every epoch; otherwise one
        deterministic pass with ``resize``: center_crop, or straight (the whole photo squashed to a square,
        as evaluate.py scores).
    skip_gray: drop grayscale photos (they teach the model to output gray); default: when training.
    min_colourfulness: with skip_gray, also drop photos (their crops, when training) less colourful than
        this on the 0..255 scale of ``metrics.colourfulness`` (real photos average about 37; sepia ~5-15).
    start_index: stream position to start from (a resumed run passes the index it had reached).
    with_stats: add a third element, a dict of per-example ``index``, cumulative ``unreadable`` and
        ``gray`` counts, and the same counts within the example's epoch (``*_in_epoch``), which the
        training loop logs once per epoch.
    shard: (number of input pipelines, this pipeline's id) when several workers read the same source.
    source_weights: when training, {source: weight} to repeat or thin each source's photos (weight_sources).
    """
    kind, arg = parse_source(source)
    if int(image_size) < 1 or int(batch_size) < 1:
        raise ColorganError(f"image_size and batch_size must be positive, got {image_size} and {batch_size}")
    skip_gray = training if skip_gray is None else skip_gray
    drop_remainder = training if drop_remainder is None else drop_remainder

    if kind == "tfds":
        encoded = load_tfds(arg, split, download=download, data_dir=data_dir,
                            shuffle_seed=seed if training else None, shard=shard)
        if training:
            encoded = encoded.repeat().shuffle(2048, seed=seed, reshuffle_each_iteration=True)
        # The order is a function of the seed, so a resumed run reads past the photos it had reached (bytes
        # only, nothing decoded) and goes on with the same stream. Indices count this worker's photos.
        indexed = encoded.skip(start_index).enumerate(start=start_index)

        def load(i, contents):
            rgb = decode_image(contents)
            return (train_transform(rgb, image_size, tf.stack([tf.cast(seed, tf.int64), i])) if training
                    else eval_transform(rgb, image_size, resize)), i
        stream = indexed.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
        first_index, stride, epoch_size = start_index, 1, 2 ** 62  # TFDS streams have no file epochs
    else:
        files = source_files(source, split, val_share, source_weights if training else None)
        stream = _file_stream(files, image_size, training, seed, start_index, shard, cache, resize)
        first_index, stride = (start_index + shard[1], shard[0]) if training else (0, 1)
        epoch_size = len(files) if training else 2 ** 62

    stream = _count_skips(stream, first_index, stride, skip_gray, epoch_size, min_colourfulness)
    if skip_gray:
        stream = stream.filter(lambda rgb, stats: tf.equal(stats["is_gray"], 0))

    def to_model(rgb, stats):
        l, ab = color.rgb_to_model(rgb)
        l = tf.ensure_shape(l, [image_size, image_size, 1])
        ab = tf.ensure_shape(ab, [image_size, image_size, 2])
        stats = {k: v for k, v in stats.items() if k != "is_gray"}
        return (l, ab, stats) if with_stats else (l, ab)

    ds = stream.map(to_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not training and cache:
        ds = ds.cache()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # A TFDS stream is replayed to resume, so its files interleave in order too (every map above keeps
    # order anyway); elsewhere --deterministic lets every op trade order for speed.
    options.deterministic = bool(deterministic) or kind == "tfds"
    return ds.with_options(options)


class EpochSkips:
    """Per-epoch counts of the photos a training stream skipped, from the stats it carries.

    Each example's stats hold cumulative ``unreadable`` and ``gray`` counts, and the same counts within
    its own epoch; an epoch's figures are known once an example of a later epoch has been seen. The loop
    looks only now and then (at log steps), so one look may close several epochs at once.
    """

    def __init__(self, files_per_epoch, start_index=0):
        self.files_per_epoch = files_per_epoch
        self.epoch = start_index // files_per_epoch
        self.before = (0, 0)   # unreadable and gray up to the end of the last finished epoch
        self.totals = (0, 0)   # unreadable and gray so far

    def update(self, index, counts):
        """The stream reached ``index`` with these counts: (first epoch, last epoch, unreadable, gray) for
        the epochs that finished since the last look, else None."""
        this_epoch = index // self.files_per_epoch
        finished = None
        if this_epoch != self.epoch:
            unread = counts["unreadable"] - counts["unreadable_in_epoch"]
            gray = counts["gray"] - counts["gray_in_epoch"]
            finished = (self.epoch, this_epoch - 1, unread - self.before[0], gray - self.before[1])
            self.before = (unread, gray)
        self.epoch = this_epoch
        self.totals = (counts["unreadable"], counts["gray"])
        return finished


def has_usable_photo(source, split, image_size, skip_gray, min_colourfulness=0.0, val_share=0.05,
                     download=False, data_dir=None):
    """True once one photo of the split can be read (and, with skip_gray, is colourful enough).

    A training stream is endless and drops what it cannot use, so a folder with no usable photo would
    spin forever at step 0. One ordered pass finds the first usable photo, at once for a healthy folder.
    """
    images = make_dataset(source, split, image_size, batch_size=1, training=False, skip_gray=skip_gray,
                          min_colourfulness=min_colourfulness, val_share=val_share, download=download,
                          data_dir=data_dir)
    return next(iter(images.take(1)), None) is not None
