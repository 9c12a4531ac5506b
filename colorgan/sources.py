"""Where training photos come from: parsing ``--data``, listing and splitting folders, weighting and
mixing sources, and opening TFDS datasets. What is done with the photos once chosen is data.py's.

One string picks the source:
  ``tfds:NAME``    any TFDS image dataset, e.g. ``tfds:coco/2017`` (``download=False`` unless asked);
  ``folder:PATH``  every jpg/png/bmp/gif/webp below PATH, split by a fixed hash of the relative path;
  ``samples``      the colour photos that ship inside installed packages (the offline default).

Several file sources in one run are a comma-separated list, each optionally named (``NAME=SOURCE``;
a folder is otherwise named by its last folder): ``shared=folder:../shared/data/train,more=folder:~/more``.
Their epoch is one list of files; ``--source_weights`` gives each its share of it (``shared=0.4,more=0.6``).
"""
import hashlib
import importlib.util
import os

import tensorflow as tf
import tensorflow_datasets as tfds

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


# --------------------------------------------------------------------------------------------------
# Sources


def parse_source(source):
    """'tfds:NAME' | 'folder:PATH' | 'samples' -> (kind, argument); a folder's ~ is expanded."""
    kind, _, arg = str(source).partition(":")
    if kind == "samples" and not arg:
        return "samples", ""
    if kind in ("tfds", "folder") and arg:
        return kind, os.path.expanduser(arg) if kind == "folder" else arg
    raise ColorganError(f"unknown data source {source!r}: use 'samples', 'folder:PATH' or 'tfds:NAME' "
                        "(for example tfds:coco/2017), or several as NAME=folder:PATH,NAME=folder:PATH")


def parse_sources(text):
    """'--data' -> [(name, kind, argument)], one per comma-separated source.

    A source is named ``NAME=SOURCE``, or else by its folder's last part ('samples' for the bundled photos).
    Several sources are file sources (a TFDS dataset is not a list of files to mix).
    """
    entries = []
    for item in (t.strip() for t in str(text).split(",")):
        head, sep, rest = item.partition("=")
        name, source = (head.strip(), rest.strip()) if sep and ":" not in head and "/" not in head else ("", item)
        kind, arg = parse_source(source)
        entries.append((name or (os.path.basename(os.path.normpath(arg)) if kind == "folder" else kind), kind, arg))
    if len(entries) > 1:
        if any(kind == "tfds" for _, kind, _ in entries):
            raise ColorganError(f"--data={text}: a TFDS dataset cannot be mixed with other sources; use it alone, "
                                "or mix folders and samples")
        names = [name for name, _, _ in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ColorganError(f"--data={text}: two sources are named {', '.join(twice)}; name each one, as "
                                "NAME=folder:PATH,OTHER=folder:PATH")
    return entries


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


def weight_sources(files, relative, weights):
    """An epoch with each source's photos ``weight`` times over: the whole part of a weight repeats every
    photo of the source, the fraction keeps that share of them (chosen by a fixed hash of the path).
    Returns the files and their relative paths."""
    counts = [weights.get(source_of(rel), 1.0) for rel in relative]
    counts = [int(w) + (_unit_hash("weight:" + rel) < w - int(w)) for w, rel in zip(counts, relative)]
    return ([f for f, n in zip(files, counts) for _ in range(n)],
            [r for r, n in zip(relative, counts) for _ in range(n)])


def mix_sources(split_files, shares):
    """One epoch of several sources' (files, relative paths) in which each source has its share: the source
    that needs the most photos for its share gives each of them once, the others repeat theirs (whole
    repeats, plus a fixed hash's choice of photos for the fraction), so that no photo is left out.
    Returns the files and, for each, the index of its source."""
    total = max(len(files) / share for (files, _), share in zip(split_files, shares) if share > 0)
    mixed, labels = [], []
    for label, ((files, relative), share) in enumerate(zip(split_files, shares)):
        repeat = share * total / len(files) if files else 0.0
        for path, rel in zip(files, relative):
            n = int(repeat) + (_unit_hash("share:" + rel) < repeat - int(repeat))
            mixed += [path] * n
            labels += [label] * n
    return mixed, labels


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


def _split_files(kind, arg, split, val_share):
    """(files, their paths relative to the source) of one file source's split."""
    if kind == "samples":
        files = sample_photo_files()
        # So few photos that a hash split could leave validation empty: take every fifth one instead.
        if split != "all":
            files = [f for i, f in enumerate(files) if (i % 5 == 4) == (split == "val")]
        relative = [os.path.basename(f) for f in files]
    else:
        files = list_images(arg)
        relative = [os.path.relpath(f, arg) for f in files]
        if split != "all":
            kept = [split_of(r, val_share) == split for r in relative]
            files = [f for f, k in zip(files, kept) if k]
            relative = [r for r, k in zip(relative, kept) if k]
    if not files:
        where = "the installed packages" if kind == "samples" else repr(arg)
        raise ColorganError(f"no images for split {split!r} in {where}: add jpg/png/bmp/gif/webp files "
                            "there, or change --val_share")
    return files, relative


def labelled_files(source, split="all", val_share=0.05, weights=None):
    """The image files of the file sources in ``source`` ('folder:PATH', 'samples', or several) that belong
    to ``split``, with the index of each file's source and the sources' names.

    weights: {name: weight}. A name of one of several sources is that source's share of every epoch
    (mix_sources; give all or none); any other name is a source within a folder (source_of), whose
    photos are repeated or thinned by its weight (weight_sources).
    """
    if split not in SPLITS:
        raise ColorganError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    entries = parse_sources(source)
    if entries[0][1] == "tfds":
        raise ColorganError(f"{source} is a TFDS dataset, not a set of files: use make_dataset for it")
    names = [name for name, _, _ in entries]
    weights = dict(weights or {})
    shares = [weights.pop(n) for n in names if n in weights] if len(entries) > 1 else []
    if shares and len(shares) < len(names):
        raise ColorganError(f"--source_weights gives shares to some of the sources {', '.join(names)}: give "
                            "each one a share, or none")
    split_files = [_split_files(kind, arg, split, val_share) for _, kind, arg in entries]
    if weights:
        within = sorted({source_of(r) for _, relative in split_files for r in relative})
        unknown = sorted(set(weights) - set(within))
        if unknown:
            known = (sorted(names) if len(names) > 1 else []) + within
            raise ColorganError(f"--source_weights names {', '.join(unknown)}, not a source of this data; its "
                                f"sources are {', '.join(known)}")
        split_files = [weight_sources(files, relative, weights) for files, relative in split_files]
    if shares and not sum(shares) > 0:
        raise ColorganError("--source_weights gives every source a share of 0: give some source a share above 0")
    if shares:
        for name, (files, _), share in zip(names, split_files, shares):
            if share > 0 and not files:
                raise ColorganError(f"--source_weights gives {name} a share, but its own weights leave it no photo")
        files, labels = mix_sources(split_files, shares)
    else:
        files = [f for group, _ in split_files for f in group]
        labels = [i for i, (group, _) in enumerate(split_files) for _ in group]
    if not files:
        raise ColorganError("--source_weights leaves no photo to train on: give some source a weight above 0")
    return files, labels, names


def source_files(source, split="all", val_share=0.05, weights=None):
    """The image files of ``source``'s ``split``, weighted (labelled_files) when ``weights`` are given."""
    return labelled_files(source, split, val_share, weights)[0]


def count_examples(source, split, val_share=0.05, download=False, data_dir=None, weights=None):
    """Photos in a source's split, checked before any work starts: a missing dataset fails here.

    For TFDS this reads only the dataset's metadata; None if it will be downloaded on first use.
    """
    (_, kind, arg), *_ = parse_sources(source)
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

