"""One process of a distributed test run: trains a tiny model, then saves its generator weights.

Usage: python distributed_worker.py STRATEGY LOGDIR WEIGHTS.npz [LOGICAL_CPUS]
       python distributed_worker.py clip - NORMS.npz LOGICAL_CPUS   (the norm of clipped SGD updates)
       python distributed_worker.py float16 - OUT.npz LOGICAL_CPUS  (loss scaling with one replica's gradient inf)
"""
import os
import signal
import sys

import numpy as np
import tensorflow as tf

strategy, logdir, out_path = sys.argv[1:4]
if len(sys.argv) > 4:  # split the CPU into logical devices before TF starts, so mirrored has replicas
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402

from colorgan import models, training  # noqa: E402
from colorgan.training.gan import ColorGAN  # noqa: E402


def clipped_update_norms(clip_norm=1.0, steps=3):
    """SGD with lr 1 moves the weights by exactly the gradient it applies: its norm must stay <= clip."""
    mirrored = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    cfg = training.TrainConfig(batch_size=4, clip_norm=clip_norm, pretrain_l1_weight=1e4)
    with mirrored.scope():
        generator = models.build_generator("unet", 32, base_filters=4, depth=5, norm="instance")
        g_opt, d_opt = keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0)
        g_opt.build(generator.trainable_variables)
    gan = ColorGAN(cfg, generator, None, g_opt, d_opt)
    rng = np.random.default_rng(0)
    l = tf.constant(rng.uniform(-1, 1, (4, 32, 32, 1)), tf.float32)
    ab = tf.constant(rng.uniform(-1, 1, (4, 32, 32, 2)), tf.float32)
    step = tf.function(lambda l, ab: mirrored.run(gan.pretrain_update, (l, ab)))
    dataset = mirrored.experimental_distribute_dataset(tf.data.Dataset.from_tensors((l, ab)).unbatch().batch(4))
    batch = next(iter(dataset))
    norms = []
    for _ in range(steps):
        before = [v.numpy() for v in generator.trainable_variables]
        step(*batch)
        norms.append(np.sqrt(sum(((v.numpy() - b) ** 2).sum() for v, b in zip(generator.trainable_variables, before))))
    return np.array(norms), mirrored.num_replicas_in_sync


def float16_step_with_one_bad_replica():
    """One float16 step where only replica 1's photos give a non-finite gradient: every replica must skip
    the update and halve the loss scale, or the mirrored weights part ways."""
    mirrored = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    cfg = training.TrainConfig(batch_size=4, pretrain_l1_weight=1.0)
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    with mirrored.scope():
        generator = models.build_generator("unet", 32, base_filters=4, depth=5, norm="instance")
        g_opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3))
        g_opt.build(generator.trainable_variables)
    gan = ColorGAN(cfg, generator, None, g_opt, None)
    rng = np.random.default_rng(0)
    l = rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
    l[2:] = np.nan  # the second replica's half of the batch
    ab = rng.uniform(-1, 1, (4, 32, 32, 2)).astype(np.float32)
    step = tf.function(lambda l, ab: mirrored.run(gan.pretrain_update, (l, ab)))

    def moves(l):
        before = [v.numpy() for v in generator.trainable_variables]
        step(*next(iter(mirrored.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((l, ab)).batch(4)))))
        return [[float(np.abs(r.numpy() - b).max()) for r in mirrored.experimental_local_results(v._value)]
                for v, b in zip(generator.trainable_variables, before)]
    scale_before = float(g_opt.dynamic_scale.numpy())
    skipped = moves(l)
    scales = [float(s.numpy()) for s in mirrored.experimental_local_results(g_opt.dynamic_scale._value)]
    trained = moves(np.nan_to_num(l, nan=0.5))  # all finite: a real update
    return np.array(skipped), np.array(trained), np.array(scales), scale_before, mirrored.num_replicas_in_sync


if strategy == "clip":
    norms, replicas = clipped_update_norms()
    np.savez(out_path, norms=norms, replicas=replicas)
    sys.exit(0)
if strategy == "float16":
    moved, trained, scales, scale_before, replicas = float16_step_with_one_bad_replica()
    np.savez(out_path, moved=moved, trained=trained, scales=scales, scale_before=scale_before, replicas=replicas)
    sys.exit(0)

# Record the stream indices each step reads on this worker (the resume test compares them).
read = []
_pretrain_step = training.Trainer.pretrain_step


def recording_pretrain_step(self, l, ab, index=None):
    if index is not None:
        read.extend(int(i) for part in self.strategy.experimental_local_results(index) for i in part.numpy())
    return _pretrain_step(self, l, ab, index)


training.Trainer.pretrain_step = recording_pretrain_step
stop_at = int(os.environ.get("STOP_AT_STEP", "0"))

cfg = training.TrainConfig(
    data="samples", image_size=32, batch_size=4, generator="unet",
    generator_options="base_filters=8,depth=5", critic="patchgan",
    critic_options="base_filters=8", objective="lsgan", train_steps=int(os.environ.get("TRAIN_STEPS", "2")),
    log_every=1, eval_every=100, checkpoint_every=100, val_images=2, cache=True, deterministic=True,
    strategy=strategy, logdir=logdir, progress=False, export=False, mixed_precision="float32",
    pretrain_steps=int(os.environ.get("PRETRAIN_STEPS", "2")))
losses = []


def on_step(step, logs):
    losses.append([logs["generator/l1"], logs.get("critic/loss", 0.0)])
    if step == stop_at:
        os.kill(os.getpid(), signal.SIGTERM)


result = training.train(cfg, on_step=on_step)
np.savez(out_path, losses=np.array(losses), indices=np.array(read, np.int64),
         replicas=result["trainer"].strategy.num_replicas_in_sync,
         *[w.numpy() for w in result["trainer"].generator.weights])
