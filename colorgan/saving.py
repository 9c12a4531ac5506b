"""Saving and loading generators: one .keras file, or a training run's checkpoint and model.json.

Runs with --ema keep the average of every generator weight beside the raw ones; loading a checkpoint of
such a run gives the averages, as its exported generator.keras does.
"""
import json
import os
import pathlib
import tempfile

import keras

from colorgan.errors import ColorganError
from colorgan.models import build_generator
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


def with_weights_dtype(model, weights_dtype):
    """A copy of ``model`` whose layers hold (and compute in) ``weights_dtype``.

    float16 halves the shipped file; its copy back to float32 differs from the original by about 0.1
    in a or b at most.
    """
    spec = keras.saving.serialize_keras_object(model)

    def recast(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node["config"]["name"] in ("float32", "float16"):
                node = dict(node, config=dict(node["config"], name=weights_dtype))
            return {k: recast(v) for k, v in node.items()}
        if isinstance(node, list):
            return [recast(v) for v in node]
        return node

    copy = keras.saving.deserialize_keras_object(recast(spec), safe_mode=False)
    copy.set_weights([w.astype(weights_dtype) for w in model.get_weights()])
    return copy


def save_generator(generator, path, weights_dtype="float32"):
    """Write ``generator`` to a ``.keras`` file, atomically (an interrupted save leaves no half file)."""
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ColorganError(f"{path}: a Keras model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    if weights_dtype != "float32":
        generator = with_weights_dtype(generator, weights_dtype)
    # Keras saves to a path that ends in .keras, so inference.write_atomically (a file object) cannot serve.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the model from other users
        generator.save(temporary)
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
        if not os.path.isfile(path):
            raise ColorganError(f"model file {path!r} does not exist")
        model = keras.saving.load_model(path, compile=False, safe_mode=False)
        if any(w.dtype == "float16" for w in model.weights):
            model = with_weights_dtype(model, "float32")
        return model, int(model.input_shape[1])

    prefix = None
    if os.path.isdir(path):
        run_dir = path if os.path.isfile(os.path.join(path, RUN_CONFIG)) else os.path.dirname(path.rstrip("/"))
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        if os.path.isdir(path) and os.path.basename(path.rstrip("/")) == "checkpoints":
            ckpt_dir = path
        prefix = tf.train.latest_checkpoint(ckpt_dir)
    else:
        ckpt_dir = os.path.dirname(path)
        run_dir = os.path.dirname(ckpt_dir)
        prefix = path if tf.io.gfile.exists(path + ".index") else None
    config_path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(config_path):
        raise ColorganError(f"{path!r} is not a colorgan run: no {RUN_CONFIG} found in {run_dir!r}; "
                            "pass a run directory written by train.py, a checkpoint in one, or a .keras file")
    if prefix is None:
        final = os.path.join(run_dir, "generator.keras")
        if os.path.isfile(final):
            return load_generator(final)
        raise ColorganError(f"no checkpoint found for {path!r}: train first, or pass a .keras file")
    with open(config_path) as f:
        config = json.load(f)
    options = dict(config.get("generator_options", {}))
    if config["generator"].startswith("backbone:"):
        options["encoder_weights"] = "none"  # the checkpoint brings the trained weights
    generator = build_generator(config["generator"], config["image_size"], **options)
    try:
        # A wrong shape fails in restore itself (ValueError); a missing variable in the assertion.
        tf.train.Checkpoint(generator=generator).restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ColorganError(f"checkpoint {prefix!r} does not match generator {config['generator']!r}: "
                            f"{str(e).splitlines()[0][:160]}") from None
    if config.get("ema"):
        _restore_weight_averages(generator, prefix)
    return generator, int(config["image_size"])


def copy_weights(path, model):
    """Start ``model`` from the weights of the saved model at ``path`` (--init_from): the same
    architecture, at any image size, since a convolutional net's weights do not depend on it."""
    source, _ = load_generator(path)
    theirs, ours = source.weights, model.weights
    if [tuple(w.shape) for w in theirs] != [tuple(w.shape) for w in ours]:
        raise ColorganError(f"{path} holds a {source.name} ({len(theirs)} weights), which does not fit this "
                            f"run's {model.name} ({len(ours)} weights): pass a model of the same "
                            "architecture and options")
    for mine, saved in zip(ours, theirs):
        mine.assign(saved.value)


class WeightAverage:
    """Exponential moving average of every weight of a model, batch-norm moving statistics included.

    Averaging only the trainable weights (as Keras's ``use_ema`` does) pairs averaged kernels with the
    raw run's batch statistics, which made nearly gray models. Averages are keyed by weight path, so they
    pair with their variables whatever trains or freezes in between.
    """

    def __init__(self, model, momentum):
        import tensorflow as tf

        self.model, self.momentum = model, momentum
        paths = [w.path for w in model.weights]
        if len(set(paths)) != len(paths):
            raise ColorganError(f"model {model.name} has weights with the same path; cannot average them")
        self.averages = {path.replace("/", "."): tf.Variable(w.value, trainable=False, name="ema")
                         for path, w in zip(paths, model.weights)}

    def pairs(self):
        return [(self.averages[w.path.replace("/", ".")], w) for w in self.model.weights]

    def update(self):
        import tensorflow as tf

        for average, weight in self.pairs():
            average.assign(self.momentum * average + (1.0 - self.momentum) * tf.cast(weight.value, average.dtype))

    def copy_to_model(self):
        for average, weight in self.pairs():
            weight.assign(average.value())


def _restore_weight_averages(generator, prefix):
    """Put the averages of every weight, which a --ema run's checkpoint keeps beside the raw weights
    (``generator_ema``), into the generator: a run with --ema exports those averages, so its
    checkpoints must give the same."""
    import tensorflow as tf

    average = WeightAverage(generator, 0.0)
    try:
        tf.train.Checkpoint(generator_ema=average.averages).restore(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ColorganError(f"checkpoint {prefix!r} holds no weight averages although its run used --ema: "
                            f"{str(e).splitlines()[0][:160]}") from None
    average.copy_to_model()
