"""Input pipelines: the photos that sources.py picks, as normalised (L, ab) batches.

File sources are read by *index*: element ``i`` of the stream is file ``shuffle(i mod N)`` of epoch
``i // N``, with its random crop and flip seeded by ``(seed, i)``. The stream is therefore a pure function
of ``(seed, i)``: a resumed run restarts it at the index it had reached, and two runs with
``deterministic=True`` see identical batches. Unreadable files are dropped with ``ignore_errors`` and
counted by the gap they leave in the index sequence; every map keeps its order (while still running in
parallel), so the counts and the resume position hold whatever the ``deterministic`` option says.
"""
import numpy as np
import tensorflow as tf

from colorgan import color, photos, sources
from colorgan.errors import ColorganError

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
# The pipeline


def decoded_photos(files):
    """image_of(i): photo ``i`` as float RGB, from one flat uint8 buffer of every photo decoded once.

    An unreadable file has no pixels; asking for it raises, as decoding it would, so the stream drops
    and counts it the same way. uint8 holds 4x less than float and decodes to exactly the same values.
    """
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


def _file_index(index, n, seed, training):
    """The file that stream index ``index`` reads: a fresh shuffle of the ``n`` files each epoch when training."""
    if not training:
        return index
    epoch = index // n
    return tf.random.experimental.index_shuffle(index % n, tf.stack([tf.cast(seed, tf.int64), epoch]), n - 1)


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
        rgb = image_of(_file_index(index, n, seed, training))
        if training:
            rgb = train_transform(rgb, image_size, tf.stack([tf.cast(seed, tf.int64), index]))
        else:
            rgb = eval_transform(rgb, image_size, resize)
        return rgb, index

    # In order, still parallel: skip counting and the resume position read the order of the indices.
    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()


def is_dull(rgb, min_colourfulness):
    """True for a grayscale photo, and for one whose colourfulness is below ``min_colourfulness`` (sepia
    and faded prints, which teach a colorizer to hedge towards brown)."""
    if not min_colourfulness:
        return is_grayscale(rgb)
    return is_grayscale(rgb) | (color.colourfulness(rgb[None])[0] < min_colourfulness)


def _count_skips(stream, first_index, stride, skip_gray, epoch_size, min_colourfulness=0.0,
                 label_of=None, num_sources=1):
    """Attach counts of unreadable and grayscale (or dull) files to each element: cumulative, and within
    its epoch, and cumulative per source (``label_of(indices)``: each stream index's source).

    A stream's indices advance by ``stride``; an unreadable file leaves a gap that ``scan`` turns into
    a running count, with no side effect, so the counts survive replay and distribution. The counts
    within the element's own epoch let the training loop close each epoch's tally exactly.
    """
    label_of = label_of or (lambda indices: tf.zeros_like(indices, tf.int32))
    by_source = lambda labels: tf.math.bincount(labels, minlength=num_sources, maxlength=num_sources, dtype=tf.int64)

    def step(state, element):
        rgb, index = element
        last_index, unreadable, gray, unreadable_in_epoch, gray_in_epoch, unreadable_by, gray_by = state
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
        unreadable_by += by_source(label_of(tf.range(first_missing, index, stride)))
        gray_by += by_source(label_of(index[None])) * gray_now  # the shuffle op takes one index at a time
        stats = {"index": index, "unreadable": unreadable, "gray": gray, "is_gray": gray_now,
                 "unreadable_in_epoch": unreadable_in_epoch, "gray_in_epoch": gray_in_epoch,
                 "unreadable_by_source": unreadable_by, "gray_by_source": gray_by}
        return (index, unreadable, gray, unreadable_in_epoch, gray_in_epoch, unreadable_by, gray_by), (rgb, stats)

    zero, zeros = tf.constant(0, tf.int64), tf.zeros([num_sources], tf.int64)
    return stream.scan((tf.constant(first_index - stride, tf.int64), zero, zero, zero, zero, zeros, zeros), step)


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
        ``gray`` counts, the same counts within the example's epoch (``*_in_epoch``), which the training
        loop logs once per epoch, and cumulative counts per source (``*_by_source``, in the order of
        ``sources.parse_sources``).
    shard: (number of input pipelines, this pipeline's id) when several workers read the same source.
    source_weights: when training, {source: weight}: several sources' shares, or weights that repeat or
        thin the photos of sources within a folder (sources.labelled_files).
    """
    (_, kind, arg), *_ = sources.parse_sources(source)
    if int(image_size) < 1 or int(batch_size) < 1:
        raise ColorganError(f"image_size and batch_size must be positive, got {image_size} and {batch_size}")
    skip_gray = training if skip_gray is None else skip_gray
    drop_remainder = training if drop_remainder is None else drop_remainder

    if kind == "tfds":
        encoded = sources.load_tfds(arg, split, download=download, data_dir=data_dir,
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
        label_of, num_sources = None, 1
    else:
        files, labels, names = sources.labelled_files(source, split, val_share, source_weights if training else None)
        stream = _file_stream(files, image_size, training, seed, start_index, shard, cache, resize)
        first_index, stride = (start_index + shard[1], shard[0]) if training else (0, 1)
        epoch_size = len(files) if training else 2 ** 62
        labels, num_sources = tf.constant(labels, tf.int32), len(names)
        label_of = lambda indices: tf.gather(labels, tf.map_fn(
            lambda i: _file_index(i, len(files), seed, training), indices, fn_output_signature=tf.int64))

    stream = _count_skips(stream, first_index, stride, skip_gray, epoch_size, min_colourfulness,
                          label_of, num_sources)
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
