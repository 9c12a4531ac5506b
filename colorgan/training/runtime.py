"""Where and how a run executes: its tf.distribute strategy and workers, the signals that stop it,
the random state a checkpoint must carry, and the image files it writes."""
import os
import signal

import tensorflow as tf

from colorgan import color
from colorgan.errors import ColorganError


def make_strategy(name):
    if name == "mirrored":
        # All local GPUs; without GPUs, every logical CPU device (one unless configured otherwise).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ColorganError("--strategy=multi_worker needs TF_CONFIG describing the cluster "
                                "(see README: Distributed training)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as e:
            raise ColorganError(f"no TPU found ({str(e)[:80]}): run on a TPU VM, or use --strategy=default") from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                              and "chief" not in resolver.cluster_spec().as_dict())


def worker_dir(cfg, strategy, chief):
    """Where this process writes: the run dir for the chief, a private copy for other workers.

    Every worker must take part in a multi-worker save, but only the chief's copy is kept for use.
    """
    if chief:
        return cfg.logdir
    resolver = strategy.cluster_resolver
    return os.path.join(cfg.logdir, "workers", f"{resolver.task_type}_{resolver.task_id}")


def image_grid(l, fake_ab, real_ab):
    """Rows of gray / predicted / real photos as one uint8 image (H*3, W*B, 3)."""
    gray = color.model_to_rgb(l, tf.zeros_like(real_ab))
    rows = [gray, color.model_to_rgb(l, fake_ab), color.model_to_rgb(l, real_ab)]
    rows = [tf.concat(tf.unstack(r), axis=1) for r in rows]
    return tf.image.convert_image_dtype(tf.concat(rows, axis=0), tf.uint8, saturate=True)


def write_png(path, image):
    tmp = path + ".tmp"
    tf.io.write_file(tmp, tf.io.encode_png(image))
    os.replace(tmp, path)


def rng_states(model):
    """The state variables of every layer's SeedGenerator (dropout masks), nested models included.

    Keras does not track them as weights, so a checkpoint must name them itself to resume exactly.
    """
    states, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        stack += getattr(layer, "layers", [])
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            states.append(generator.state)
    return states


class StopRequested:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step boundary and exits 0."""

    def __init__(self):
        self.signal = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under some test runners)
                pass

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
