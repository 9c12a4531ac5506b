"""Which arithmetic a run computes in (--mixed_precision), and for `auto` why.

On a GPU the hardware decides: tensor cores make bfloat16 (compute capability 8+) or float16 (7.x) the
fast choice for any network. On a CPU with bfloat16 units (AVX512-BF16, AMX) it depends on the network
as well. oneDNN's bfloat16 convolutions gain 2.3x on the seeds' U-Net on a Zen 5, but its bfloat16
depthwise convolutions are far slower than its float32 ones there, in the backward pass above all: the
input gradient of a stride-2 5x5 depthwise convolution takes 35 ms in bfloat16 against 1.3 ms in float32
on a batch of 16. Depthwise convolutions are memory-bound, so float32 costs them little. An
EfficientNet-Lite U-Net therefore trains fastest in bfloat16 with its depthwise convolutions in float32,
and on an AMX Xeon it may gain nothing from bfloat16 at all.

So on such CPUs `auto` measures. A short probe times a stand-in of the training step (the generator's
and critic's forward and backward passes) at the run's size and batch for each candidate, in turns, and
picks the fastest. It keeps float32 unless bfloat16 is at least 5% faster. The choice is cached per
CPU, TensorFlow version, networks, size and batch in $COLORGAN_CACHE_DIR/precision.json, so the probe
runs once per machine and set-up. A run too short to repay the probe takes the rule instead: bfloat16
with float32 depthwise convolutions.
"""
import dataclasses
import json
import multiprocessing
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from colorgan import models, outputs

# A probe costs about half a minute at 128 px (three candidates: build, trace, five steps each); runs
# shorter than this many steps would not get it back.
PROBE_MIN_STEPS = 2000
# bfloat16 must beat float32 by this much to be chosen: float32's extra accuracy is worth a little speed.
MIN_GAIN = 0.05
BF16_FLAGS = {"amx_bf16", "avx512_bf16"}
DEPTHWISE_FLOAT32 = "+depthwise_float32"


@dataclasses.dataclass(frozen=True)
class Precision:
    """A run's arithmetic: the compute dtype of its layers, and whether depthwise convolutions keep float32."""
    compute: str = "float32"  # float32 | float16 | bfloat16
    depthwise_float32: bool = False
    reason: str = ""

    @property
    def policy(self):
        return "float32" if self.compute == "float32" else f"mixed_{self.compute}"

    def __str__(self):
        """Its --mixed_precision name, e.g. bfloat16+depthwise_float32."""
        return self.compute + (DEPTHWISE_FLOAT32 if self.depthwise_float32 else "")

    @classmethod
    def named(cls, name, reason=""):
        return cls(name.removesuffix(DEPTHWISE_FLOAT32) or "float32", name.endswith(DEPTHWISE_FLOAT32), reason)

    def apply(self, *networks):
        """Put the depthwise convolutions of models built under ``self.policy`` back into float32 where
        asked. Their weights are float32 under every policy; only what they compute in changes."""
        if not self.depthwise_float32:
            return
        for network in networks:
            for layer in models.all_layers(network):
                if isinstance(layer, keras.layers.DepthwiseConv2D):
                    layer.dtype_policy = keras.DTypePolicy("float32")


CANDIDATES = (Precision("float32"), Precision("bfloat16"), Precision("bfloat16", depthwise_float32=True))


def cpu_field(name):
    """The first /proc/cpuinfo line's value for ``name`` ("flags", "model name"), or "" where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(name)), "")
    except OSError:
        return ""


def cpu_flags():
    return set(cpu_field("flags").split())


def by_hardware(name):
    """What --mixed_precision=NAME means on this machine by the hardware alone (no probe)."""
    if name != "auto":
        return Precision.named(name, reason="as asked")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major = (tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0))[0]
        compute = "bfloat16" if major >= 8 else "float16" if major == 7 else "float32"
        return Precision(compute, reason=f"a GPU of compute capability {major}.x")
    if not cpu_flags() & BF16_FLAGS:
        return Precision("float32", reason="this CPU has no bfloat16 units (AVX512-BF16 or AMX)")
    return Precision("bfloat16", depthwise_float32=True,
                     reason="a CPU with bfloat16 units, whose depthwise convolutions are faster in float32")


def resolve(cfg, replicas=1):
    """The Precision for the run ``cfg``: by the hardware, or on a CPU with bfloat16 units for `auto`, by
    the probe (or its cached answer). One replica only: replicas of one run must agree, and the probe's
    timings on several workers need not."""
    rule = by_hardware(cfg.mixed_precision)
    # Of the rule's answers for auto only the one for CPUs with bfloat16 units (float32 depthwise
    # convolutions) is a guess; the others are what the hardware dictates.
    if cfg.mixed_precision != "auto" or not rule.depthwise_float32 or replicas != 1:
        return rule
    key = cache_key(cfg)
    cached = read_cache().get(key)
    if cached and cached.get("choice") in map(str, CANDIDATES):
        choice = Precision.named(cached["choice"])
        return dataclasses.replace(choice, reason=f"{explain(choice, cached['seconds'])}, measured "
                                                  f"{cached['measured']} (cached in {cache_path()})")
    if cfg.total_steps < PROBE_MIN_STEPS:
        return dataclasses.replace(rule, reason=f"{rule.reason}; a run of {cfg.total_steps} steps is too short "
                                                f"to repay a probe")
    logging.info("--mixed_precision=auto: timing float32 and bfloat16 on this CPU at %d px, batch %d (once per "
                 "machine and set-up)", cfg.image_size, cfg.batch_size)
    try:
        seconds = measure(cfg)
    except Exception as e:  # the probe only speeds the run up: its failure must not stop it
        logging.warning("the precision probe failed (%s): taking the rule instead",
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
        return dataclasses.replace(rule, reason=f"{rule.reason}; the probe failed")
    choice = pick(seconds)
    write_cache(key, dict(choice=str(choice), seconds=seconds, measured=time.strftime("%Y-%m-%d")))
    return dataclasses.replace(choice, reason=explain(choice, seconds))


def pick(seconds):
    """The candidate to use, given each one's seconds a step (keyed by str(candidate))."""
    fastest = min(CANDIDATES, key=lambda c: seconds[str(c)])
    if fastest.compute != "float32" and seconds[str(fastest)] > (1 - MIN_GAIN) * seconds["float32"]:
        return CANDIDATES[0]
    return fastest


def explain(choice, seconds):
    shown = ", ".join(f"{name} {s:.3f} s" for name, s in sorted(seconds.items(), key=lambda kv: kv[1]))
    if choice.compute == "float32" and min(seconds, key=seconds.get) != "float32":
        return f"bfloat16 gains under {MIN_GAIN:.0%} on a step here ({shown})"
    return f"the fastest step here ({shown})"


def measure(cfg):
    """probe(cfg) in a child process: its models would otherwise take Keras's layer names (and the run's
    checkpoints and averages are keyed by them) and draw from the run's random state."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(probe, (cfg,))


def probe(cfg, rounds=5):
    """Median seconds of a stand-in training step for each candidate, timed in turns after two warm-ups.

    The stand-in is what dominates the real step: the generator's forward and backward pass, and the
    critic's on a real and a generated pair, with gradients for every weight of both."""
    from colorgan.training.config import parse_options

    steps = {}
    previous = keras.mixed_precision.global_policy()
    try:
        for candidate in CANDIDATES:
            keras.mixed_precision.set_dtype_policy(candidate.policy)
            generator = models.build_generator(cfg.generator, cfg.image_size, **parse_options(cfg.generator_options))
            critic = models.build_critic(cfg.critic, cfg.image_size, in_channels=3, **parse_options(cfg.critic_options))
            candidate.apply(generator, critic)
            steps[str(candidate)] = stand_in_step(generator, critic, cfg.batch_size, cfg.image_size)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    times = {name: [] for name in steps}
    for _ in range(2):
        for step in steps.values():
            step()
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def stand_in_step(generator, critic, batch, size):
    rng = np.random.default_rng(0)
    inputs = [tf.constant(rng.uniform(-1, 1, (batch, *x.shape[1:])).astype(np.float32)) for x in generator.inputs]
    l, ab = inputs[0], tf.constant(rng.uniform(-0.5, 0.5, (batch, size, size, 2)).astype(np.float32))
    variables = generator.trainable_variables + critic.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            fake = tf.cast(generator(inputs if len(inputs) > 1 else l, training=True), tf.float32)
            judged = [critic(tf.concat([l, x], -1), training=True) for x in (ab, fake)]
            loss = tf.reduce_mean(tf.abs(fake - ab)) + sum(tf.reduce_mean(tf.cast(j, tf.float32)) for j in judged)
        grads = tape.gradient(loss, variables)
        return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in grads if g is not None])

    return lambda: float(step())  # float(): wait for the result


# ------------------------------------------------------------------------------------------------
# The cache of probe results


def cache_path():
    return os.path.join(outputs.cache_dir(), "precision.json")


def cache_key(cfg):
    flags = ",".join(sorted(cpu_flags() & BF16_FLAGS))
    cpu = cpu_field("model name") or platform.processor()
    return (f"{cpu} [{flags}] | TensorFlow {tf.__version__} | {cfg.generator} {cfg.generator_options} | "
            f"{cfg.critic} {cfg.critic_options} | {cfg.image_size} px | batch {cfg.batch_size}")


def read_cache():
    try:
        with open(cache_path(), encoding="utf-8") as f:
            entries = json.load(f)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, or damaged: probe again and write it anew


def write_cache(key, entry):
    """Add one entry; the cache is only an optimisation, so a folder that cannot be written is not an error."""
    entries = dict(read_cache(), **{key: entry})
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        os.replace(path + ".tmp", path)
    except OSError as e:
        logging.warning("could not keep the precision probe's result in %s (%s): the next run probes again", path, e)
