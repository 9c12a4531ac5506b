"""One process of a distributed test run: trains a tiny model, then saves its generator weights.

Usage: python distributed_worker.py STRATEGY LOGDIR WEIGHTS.npz [LOGICAL_CPUS]
"""
import os
import sys

import numpy as np
import tensorflow as tf

strategy, logdir, weights_path = sys.argv[1:4]
if len(sys.argv) > 4:  # split the CPU into logical devices before TF starts, so mirrored has replicas
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from colorgan import training  # noqa: E402

cfg = training.TrainConfig(
    data="samples", image_size=32, batch_size=4, generator="unet",
    generator_options="base_filters=8,depth=5,norm=instance", critic="patchgan",
    critic_options="base_filters=8,norm=instance", objective="lsgan", pretrain_steps=2, train_steps=2,
    log_every=1, eval_every=100, checkpoint_every=100, val_images=2, cache=True, deterministic=True,
    strategy=strategy, logdir=logdir, progress=False, export=False)
losses = []
result = training.train(cfg, on_step=lambda step, logs: losses.append(
    [logs["generator/l1"], logs.get("critic/loss", 0.0)]))
np.savez(weights_path, losses=np.array(losses),
         replicas=result["trainer"].strategy.num_replicas_in_sync,
         *[w.numpy() for w in result["trainer"].generator.weights])
