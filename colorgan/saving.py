"""Saving and loading generators: one .keras file, or a training run's checkpoint and model.json.

Runs with --ema keep the average of every generator weight beside the raw ones; loading a checkpoint of
such a run gives the averages, as its exported generator.keras does.

.keras files are loaded in Keras's safe mode, the shipped one too (its layers are registered classes):
a model file is data, and one that carries Python code (a Lambda layer) is refused, not run.
"""
import json
import os
import pathlib
import re
import tempfile

import keras
from absl import logging

from colorgan import hints
from colorgan.errors import ColorganError
from colorgan.models import all_layers, build_generator
from colorgan.photos import current_umask

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


# Every policy a layer may carry; copies get one plain policy, so that they compute in what they hold.
_POLICY_NAMES = ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")


def with_weights_dtype(model, weights_dtype):
    """A copy of ``model`` whose layers hold (and compute in) ``weights_dtype``.

    Files whose layers are float16 (as earlier colorgan wrote float16 files, the shipped model among them) are
    brought back to float32 by this. The copy is rebuilt from the model's own config in safe mode, so
    that it can never run code that a user's file carried in.
    """
    spec = keras.saving.serialize_keras_object(model)

    def recast(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node["config"]["name"] in _POLICY_NAMES:
                node = dict(node, config=dict(node["config"], name=weights_dtype))
            return {k: recast(v) for k, v in node.items()}
        if isinstance(node, list):
            return [recast(v) for v in node]
        return node

    copy = keras.saving.deserialize_keras_object(recast(spec), safe_mode=True)
    copy.set_weights([w.astype(weights_dtype) for w in model.get_weights()])
    return copy


def _store_weights_as_float16(keras_file):
    """Rewrite the weights inside a .keras file as float16, leaving its float32 layers as they are.

    Keras casts each stored array to its variable's dtype when it loads, so the file halves and still
    computes in float32 wherever it is loaded, by colorgan or by a plain keras.saving.load_model.
    """
    import io
    import zipfile

    import h5py
    import numpy as np

    def copy(source, target):
        target.attrs.update(source.attrs)
        for key, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, target.create_group(key))
                continue
            values = item[()]
            target.create_dataset(key, data=values.astype(np.float16) if values.dtype == np.float32 else values)
            target[key].attrs.update(item.attrs)

    with zipfile.ZipFile(keras_file) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(keras_file, "w") as archive:
        for info, contents in members:
            if info.filename.endswith(".weights.h5"):
                halved = io.BytesIO()
                with h5py.File(io.BytesIO(contents), "r") as source, h5py.File(halved, "w") as target:
                    copy(source, target)
                contents = halved.getvalue()
            archive.writestr(info, contents)


def save_generator(generator, path, weights_dtype="float32"):
    """Write ``generator`` to a ``.keras`` file, atomically (an interrupted save leaves no half file)."""
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ColorganError(f"{path}: a Keras model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights_dtype not in ("float32", "float16"):
        raise ColorganError(f"weights can be stored as float32 or float16, not {weights_dtype!r}")
    if any(layer.dtype_policy.name != "float32" for layer in all_layers(generator)):
        generator = with_weights_dtype(generator, "float32")  # a mixed-precision run's layers, say
    # Keras saves to a path that ends in .keras, so inference.write_atomically (a file object) cannot serve.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the model from other users
        generator.save(temporary)
        if weights_dtype == "float16":
            _store_weights_as_float16(temporary)
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
        model = load_keras_file(path)
        return model, input_size(model)

    if os.path.isdir(path):
        run_dir = path if os.path.isfile(os.path.join(path, RUN_CONFIG)) else os.path.dirname(path.rstrip("/"))
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        if os.path.isdir(path) and os.path.basename(path.rstrip("/")) == "checkpoints":
            ckpt_dir = path
        prefixes = checkpoints_newest_first(ckpt_dir)
    else:
        ckpt_dir = os.path.dirname(path)
        run_dir = os.path.dirname(ckpt_dir)
        prefixes = [path] if tf.io.gfile.exists(path + ".index") else []  # exactly this one, or none
    config_path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(config_path):
        raise ColorganError(f"{path!r} is not a colorgan run: no {RUN_CONFIG} found in {run_dir!r}; "
                            "pass a run directory written by train.py, a checkpoint in one, or a .keras file")
    if not prefixes:
        final = os.path.join(run_dir, "generator.keras")
        if os.path.isfile(final):
            return load_generator(final)
        raise ColorganError(f"no checkpoint found for {path!r}: train first, or pass a .keras file")
    try:
        with open(config_path) as f:
            config = json.load(f)
        name, image_size = config["generator"], int(config["image_size"])
        options = dict(config.get("generator_options", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ColorganError(f"{config_path} is damaged ({type(e).__name__}: {str(e)[:80]}); copy it from a "
                            "backup, or write it again by resuming the run with the flags in its flags.cfg") from None
    if name.startswith("backbone:"):
        options["encoder_weights"] = "none"  # the checkpoint brings the trained weights
    generator = build_generator(name, image_size, **options)

    def restore(prefix):
        try:
            # A wrong shape fails in restore itself (ValueError); a missing variable in the assertion.
            tf.train.Checkpoint(generator=generator).restore(prefix).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ColorganError(f"checkpoint {prefix!r} does not match generator {name!r}: "
                                f"{str(e).splitlines()[0][:160]}") from None
        if config.get("ema"):
            _restore_weight_averages(generator, prefix)

    prefix, damaged = restore_newest_intact(restore, prefixes)
    if prefix is None and len(prefixes) == 1 and prefixes[0] == path:  # asked for exactly that one
        raise ColorganError(f"checkpoint {path} is damaged ({damaged[0][1]}); pass its run dir to use the "
                            "newest intact checkpoint, or another checkpoint")
    report_damaged(damaged, prefix, ckpt_dir, "using")
    return generator, image_size


def checkpoints_newest_first(ckpt_dir):
    """Every checkpoint prefix in ``ckpt_dir``, the highest step first: those its `checkpoint` list names
    (even if their files are gone, so that they are reported) and those whose index file is there (so
    that a damaged or deleted list loses none)."""
    import tensorflow as tf

    prefixes = set()
    try:
        state = tf.train.get_checkpoint_state(ckpt_dir)
    except Exception:  # a list that is not text: its checkpoints are still found from their files
        state = None
    if state is not None:
        prefixes.update(os.path.join(ckpt_dir, os.path.basename(p)) for p in state.all_model_checkpoint_paths)
        if state.model_checkpoint_path:
            prefixes.add(os.path.join(ckpt_dir, os.path.basename(state.model_checkpoint_path)))
    prefixes.update(p[:-len(".index")] for p in tf.io.gfile.glob(os.path.join(ckpt_dir, "*.index"))
                    if not p.endswith("_temp.index"))

    def step(prefix):
        number = re.search(r"-(\d+)$", prefix)
        return int(number[1]) if number else -1
    return sorted(prefixes, key=lambda p: (step(p), p), reverse=True)


def restore_newest_intact(restore, prefixes):
    """(the prefix that ``restore(prefix)`` took, [(damaged prefix, what is wrong)]): the prefixes are
    tried in order, and one whose files are damaged is passed over for the next. A ColorganError from
    ``restore`` (a checkpoint of another model) is raised at once. The prefix is None if none worked."""
    import tensorflow as tf

    damaged = []
    for prefix in prefixes:
        try:
            restore(prefix)
            return prefix, damaged
        except (tf.errors.OpError, IndexError, OSError) as e:
            # What a checkpoint whose files are cut short, damaged or gone raises: TF's OpErrors (NotFound,
            # DataLoss, "not an sstable"), and IndexError ("Read less bytes than requested") for a cut data file.
            damaged.append((prefix, _damage(prefix, e)))
    return None, damaged


def _damage(prefix, error):
    """What is wrong with a checkpoint's files, in a few words."""
    import tensorflow as tf

    if not tf.io.gfile.exists(prefix + ".index"):
        return "its index file is missing"
    data = tf.io.gfile.glob(prefix + ".data-*")
    shards = re.search(r"-of-(\d+)$", data[0]) if data else None
    if not data or shards and len(data) < int(shards[1]):
        return "a data file is missing"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "Read less bytes" in text or "truncated" in text.lower():
        return "its data file is cut short"
    if "sstable" in text or "bad magic" in text:
        return "its index file is damaged"
    return f"{type(error).__name__}: {text[:100]}"


def report_damaged(damaged, used, ckpt_dir, verb):
    """Name each damaged checkpoint and what was used instead; raise if nothing was usable."""
    for prefix, what in damaged:
        logging.warning("checkpoint %s is damaged (%s)%s", prefix, what,
                        f"; {verb} {os.path.basename(used)}, the newest intact one" if used else "")
    if used is None and damaged:
        names = ", ".join(f"{os.path.basename(p)} ({what})" for p, what in damaged)
        raise ColorganError(f"every checkpoint in {ckpt_dir} is damaged: {names}; restore them from a backup, "
                            "or move that folder away to start afresh")


def load_keras_file(path, colorizer=True):
    """A generator (or, with colorizer=False, any model: a critic) from a user's .keras file, loaded in
    Keras's safe mode: a file that carries Python code (a Lambda layer, a TFSMLayer) is refused rather
    than run. Every way the file can be wrong is one ColorganError that names it."""
    import zipfile

    _check_regular_file(path)
    if not zipfile.is_zipfile(path):
        raise ColorganError(f"model file {path} is not a Keras model: it is not a zip archive (a truncated "
                            "download, or another format saved under a .keras name); save it again with "
                            "model.save or `colorgan export --format=keras`")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # a damaged archive fails in zipfile, h5py or Keras, with any exception type
        raise ColorganError(f"model file {path} {_what_is_wrong(e)}") from None
    if colorizer:
        _check_colorizer_shapes(model, path)
    if any(w.dtype == "float16" for w in model.weights):
        model = with_weights_dtype(model, "float32")
    return model


def _what_is_wrong(error):
    """Keras wraps the real reason in layers of TypeErrors, one per nested object: find it."""
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = " ".join(str(e) for e in chain)
    if "safe_mode" in text:  # Keras's safe mode refused to run what the file carries
        what = next((f"a {name} layer" for name in ("Lambda", "TFSMLayer") if name in text), "Python code")
        return f"holds {what}, code that colorgan never runs from a file (Keras safe mode); rebuild the model " \
               "from standard layers"
    custom = re.search(r"Could not locate (class|function) '([^']+)'", text)
    if custom:
        return f"needs the {custom[1]} {custom[2]!r}, which is neither Keras's nor colorgan's; rebuild the model " \
               "from standard layers"
    first = str(chain[-1]).strip().splitlines()[0][:160] if str(chain[-1]).strip() else ""
    return f"cannot be loaded as a Keras model ({type(chain[-1]).__name__}: {first}); save it again with model.save"


def _check_regular_file(path):
    if not os.path.lexists(path):
        raise ColorganError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ColorganError(f"model file {path} is a folder, not a .keras file; pass the file itself")
    if not os.path.isfile(path):  # a FIFO would block the reader, a dangling link has nothing to read
        raise ColorganError(f"model file {path} is not a regular file (a FIFO, a device or a dangling link)")


def input_size(model):
    """The side S of the square L a generator takes (its first input, (None, S, S, 1))."""
    return int(model.inputs[0].shape[1])


def _check_colorizer_shapes(model, path):
    """A colorizer maps L (None, S, S, 1), and with hints their maps (None, S, S, 3), to ab (None, S, S, 2);
    anything else would fail much later."""
    inputs, outputs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
    shapes = [tuple(t.shape) for t in inputs], [tuple(t.shape) for t in outputs]
    if len(inputs) in (1, 2) and len(outputs) == 1:
        (l_shape, *hint_shape), (ab_shape,) = shapes
        size = l_shape[1] if len(l_shape) == 4 else None
        if size and l_shape == (None, size, size, 1) and ab_shape == (None, size, size, 2) and \
                hint_shape in ([], [(None, size, size, hints.CHANNELS)]):
            return
    described = " and ".join(", ".join(str(s) for s in side) or "none" for side in shapes)
    raise ColorganError(f"model file {path} is not a colorizer: its inputs and outputs are {described}, "
                        "where a colorgan generator takes L as (None, S, S, 1) (and with hints their maps as "
                        "(None, S, S, 3)) and gives ab as (None, S, S, 2)")


# Parts a generator may have that the model it starts from lacks, by the prefix of their layers' names: the scene
# context (backbone.global_context) and the colour hints' branch (models/hint_branch.py). Each starts at zero, so
# the new model computes what the old one did.
OPTIONAL_PARTS = {"context_": "the scene context", "hint_": "the colour hints' branch"}


def _is_optional(layer):
    return layer.name.startswith(tuple(OPTIONAL_PARTS))


def _output_layer_weights(model):
    """The weights of the last layer that has any, optional parts aside: the colour head of a generator."""
    return next(layer.weights for layer in reversed(model.layers) if layer.weights and not _is_optional(layer))


def copy_weights(path, model):
    """Start ``model`` from the weights of the saved model at ``path`` (--init_from): the same
    architecture, at any image size, since a convolutional net's weights do not depend on it.

    A model with parts the file's lacks (OPTIONAL_PARTS: the scene context, the hints' branch, or both)
    takes every other weight from it; those parts start as built, at zero. A generator whose colour head
    differs (tanh regression in the file, Zhang's classes in the run, or the reverse) takes every weight
    but the head's, which starts fresh.
    """
    import itertools

    source = load_keras_file(path, colorizer=False)  # a critic too; the weight shapes are checked below
    theirs, ours = source.weights, model.weights
    shapes = lambda weights: [tuple(w.shape) for w in weights]
    parts = {prefix: {id(w) for layer in model.layers if layer.name.startswith(prefix) for w in layer.weights}
             for prefix in OPTIONAL_PARTS}
    parts = {prefix: ids for prefix, ids in parts.items() if ids}
    head = {id(w) for w in _output_layer_weights(model)}
    their_head = len(_output_layer_weights(source))
    # The fewest new parts that make the file fit, first as they are, then with a new colour head.
    for new_head, count in itertools.product((False, True), range(len(parts) + 1)):
        for new in itertools.combinations(parts, count):
            left_out = set().union(*(parts[prefix] for prefix in new), head if new_head else ())
            kept = [w for w in ours if id(w) not in left_out]
            if shapes(theirs[:-their_head] if new_head else theirs) == shapes(kept):
                break
        else:
            continue
        break
    else:
        raise ColorganError(f"{path} holds a {source.name} ({len(theirs)} weights), which does not fit this "
                            f"run's {model.name} ({len(ours)} weights): pass a model of the same "
                            "architecture and options")
    fresh = [OPTIONAL_PARTS[prefix] for prefix in new] + (["the colour head"] if new_head else [])
    if fresh:
        logging.info("--init_from %s: every weight but those of %s, new to this run", path, " and ".join(fresh))
    for mine, saved in zip(kept, theirs[:-their_head] if new_head else theirs):
        mine.assign(saved.value)


class WeightAverage:
    """Exponential moving average of every weight of a model, batch-norm moving statistics included.

    Averaging only the trainable weights (as Keras's ``use_ema`` does) pairs averaged kernels with the
    raw run's batch statistics, which made nearly gray models. Averages pair with their variables by
    weight path, whatever trains or freezes in between; in checkpoints they are keyed by the weight's
    position in ``model.weights``, because paths carry Keras's per-process layer numbers (conv2d_18 in a
    process that built one model before, conv2d_8 in a fresh one), and a resumed run is a fresh process.
    """

    def __init__(self, model, momentum):
        import tensorflow as tf

        self.model, self.momentum = model, momentum
        paths = [w.path for w in model.weights]
        if len(set(paths)) != len(paths):
            raise ColorganError(f"model {model.name} has weights with the same path; cannot average them")
        self._by_path = {path: tf.Variable(w.value, trainable=False, name="ema")
                         for path, w in zip(paths, model.weights)}
        self.averages = {str(i): self._by_path[path] for i, path in enumerate(paths)}

    def checkpointed_as(self, prefix):
        """The averages keyed as checkpoint ``prefix`` keeps them: by position, or, in checkpoints written
        before that, by weight path with that process's layer numbers, which are matched to this model's by
        their order among layers of the same base name (conv2d_18 is the first conv2d of the model there,
        conv2d_8 here)."""
        import tensorflow as tf

        scope = "generator_ema/"
        keys = {name[len(scope):].split("/.ATTRIBUTES")[0].replace("..", ".")
                for name, _ in tf.train.list_variables(prefix) if name.startswith(scope)}
        if not keys or all(key.isdigit() for key in keys):
            return self.averages
        ours = {path.replace("/", "."): average for path, average in self._by_path.items()}
        theirs = {free: key for key, free in _numbering_free(keys).items()}
        return {theirs[free]: ours[key] for key, free in _numbering_free(ours).items() if free in theirs}

    def pairs(self):
        return [(self._by_path[w.path], w) for w in self.model.weights]

    def update(self):
        import tensorflow as tf

        # m * average + (1 - m) * weight, written so that a weight that does not move keeps its average exactly
        # (a frozen layer, --train_hints_only), which the two products' rounding would not.
        for average, weight in self.pairs():
            average.assign_add((1.0 - self.momentum) * (tf.cast(weight.value, average.dtype) - average))

    def copy_to_model(self):
        for average, weight in self.pairs():
            weight.assign(average.value())


def _numbering_free(keys):
    """{key: the key with its layer's number replaced by the layer's rank among the layers of the same
    base name}, for weight keys ``layer.variable``: the same model built in two processes gives the same
    numbering-free keys."""
    layers = {key.rsplit(".", 1)[0] for key in keys}
    by_base = {}
    for layer in layers:
        base, number = re.fullmatch(r"(.*?)(?:_(\d+))?", layer).groups()
        by_base.setdefault(base, []).append((int(number or 0), layer))
    rank = {layer: f"{base}#{i}" for base, members in by_base.items()
            for i, (_, layer) in enumerate(sorted(members))}
    return {key: rank[key.rsplit(".", 1)[0]] + "." + key.rsplit(".", 1)[1] for key in keys}


def _restore_weight_averages(generator, prefix):
    """Put the averages of every weight, which a --ema run's checkpoint keeps beside the raw weights
    (``generator_ema``), into the generator: a run with --ema exports those averages, so its
    checkpoints must give the same."""
    import tensorflow as tf

    average = WeightAverage(generator, 0.0)
    try:
        tf.train.Checkpoint(generator_ema=average.checkpointed_as(prefix)).restore(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ColorganError(f"checkpoint {prefix!r} holds no weight averages although its run used --ema: "
                            f"{str(e).splitlines()[0][:160]}") from None
    average.copy_to_model()
