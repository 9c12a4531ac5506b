"""The training loop: L1 pretraining of the generator, then conditional-GAN training.

One path, top to bottom (nanoGPT style): config -> strategy -> data -> models and optimisers ->
checkpoint restore -> a loop over steps with one compiled step per stage -> logs, checkpoints, export.
The step counter alone decides the stage, the learning rate, and every random draw of the GAN step,
so a run resumed from a checkpoint continues the same schedule. What a step computes is in gan.py.
"""
import math
import os

import keras
import tensorflow as tf
from absl import logging

from colorgan import ab_bins, color, data, hints, metrics, models, saving, sources
from colorgan.errors import ColorganError
from colorgan.models import hint_branch
from colorgan.training import precision
from colorgan.training.config import parse_options, validate, write_flagfile
from colorgan.training.gan import ColorGAN
from colorgan.training.logs import Clock, log_epoch_skips, log_scalars, newest_stats
from colorgan.training.prior import colour_prior
from colorgan.training.runtime import (StopRequested, image_grid, is_chief, make_strategy, rng_states,
                                       worker_dir, write_png)


@keras.saving.register_keras_serializable(package="colorgan")
class Adam(keras.optimizers.Adam):
    """Keras's Adam, each variable's update one fused kernel (ResourceApplyAdam) where no tf.distribute
    strategy is in scope. Keras writes the update as eight element-wise ops over the weights and both
    moments, a tenth of the pix2pix step's op time under bfloat16 (BENCHMARKS.md); the kernel reads each
    once. The same slots and arithmetic, so checkpoints are interchangeable with Keras's Adam's."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or tf.distribute.has_strategy() or not isinstance(variable, tf.Variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


# Hints per photo in the validation score of a generator that takes hints (val/psnr_hints).
VAL_HINTS = 10


def make_optimizer(lr, steps, cfg, loss_scaling=False):
    if cfg.lr_decay == "linear" and steps:
        lr = keras.optimizers.schedules.PolynomialDecay(lr, steps, end_learning_rate=0.0)
    elif cfg.lr_decay == "cosine" and steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, steps)
    # No global_clipnorm here: the GAN step clips the summed gradient of all replicas (gan.py).
    opt = Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scaling else opt


def synchronize_batch_norm(model):
    """Batch norm over the global batch: per-replica statistics would train another model at each replica
    count (and batch norm's whole point is the statistics of the batch)."""
    for layer in models.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


class Trainer:
    """Holds the models, optimisers, compiled steps and checkpoint of one run."""

    def __init__(self, cfg):
        validate(cfg)
        self.cfg = cfg
        # Collective ops (multi_worker) must be set up before any other TF op runs.
        self.strategy = make_strategy(cfg.strategy)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise ColorganError(f"--batch_size={cfg.batch_size} does not divide across {replicas} replicas: "
                                f"use a multiple of {replicas}")
        # Fail on a missing dataset now, not after building a 54M-parameter model.
        self.source_weights = sources.parse_source_weights(cfg.source_weights)
        self.files_per_epoch = sources.count_examples(cfg.data, "train", cfg.val_share, cfg.download,
                                                   cfg.data_dir or None, self.source_weights)
        self.arithmetic = precision.resolve(cfg, replicas)
        self.precision = self.arithmetic.compute
        logging.info("--mixed_precision=%s: %s, %s", cfg.mixed_precision, self.arithmetic, self.arithmetic.reason)
        if cfg.lr_encoder and self.precision == "float16":
            raise ColorganError("--lr_encoder does not combine with float16 loss scaling (two optimisers would "
                                "unscale one gradient differently): use --mixed_precision=bfloat16 or float32")
        keras.utils.set_random_seed(cfg.seed)
        self.chief = is_chief(self.strategy)
        self.out_dir = worker_dir(cfg, self.strategy, self.chief)
        self.generator_options = parse_options(cfg.generator_options)
        self.critic_options = parse_options(cfg.critic_options)
        # Layers take the global dtype policy when they are built; put it back afterwards, so that models
        # built later in the same process (an export, a test) are not silently bfloat16.
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_dtype_policy(self.arithmetic.policy)
        try:
            with self.strategy.scope():
                self._build_models()
                self.arithmetic.apply(self.generator, self.critic)
        finally:
            keras.mixed_precision.set_dtype_policy(previous)
        os.makedirs(self.out_dir, exist_ok=True)
        extra = {"generator_ema": self.average.averages} if self.average else {}
        if self.gan.e_opt is not None:
            extra["encoder_optimizer"] = self.gan.e_opt
        if self.class_weights is not None:
            extra["class_weights"] = self.class_weights
        if self.l1_weights is not None:
            extra["l1_weights"] = self.l1_weights
        self._checkpointed = dict(
            generator=self.generator, critic=self.critic, generator_optimizer=self.g_opt,
            critic_optimizer=self.d_opt, step=self.step, data_index=self.data_index,
            rng=rng_states(self.generator) + rng_states(self.critic), **extra)
        self.checkpoint = tf.train.Checkpoint(**self._checkpointed)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.out_dir, "checkpoints"), max_to_keep=cfg.keep_checkpoints)
        self._pretrain_fn = self._adversarial_fn = None

    def _build_models(self):
        cfg, scaling = self.cfg, self.precision == "float16"
        self.generator = models.build_generator(cfg.generator, cfg.image_size, **self.generator_options)
        self.critic = models.build_critic(cfg.critic, cfg.image_size, in_channels=3, **self.critic_options)
        if cfg.sync_batch_norm and self.strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(self.generator)
            synchronize_batch_norm(self.critic)
        if cfg.init_from:
            saving.copy_weights(cfg.init_from, self.generator)
        if cfg.init_critic_from:
            saving.copy_weights(cfg.init_critic_from, self.critic)
        if cfg.train_hints_only:
            if not hint_branch.takes_hints(self.generator):
                raise ColorganError("--train_hints_only trains a generator's hint branch, and this one has none: add "
                                    "hints=true to --generator_options (or drop --train_hints_only)")
            for layer in self.generator.layers:  # frozen batch norms keep their statistics too
                layer.trainable = layer.name.startswith(hint_branch.PREFIX)
        self.encoder = next((l for l in self.generator.layers if l.name == "encoder"), None)
        self.g_opt = make_optimizer(cfg.lr_generator, cfg.total_steps, cfg, scaling)
        self.d_opt = make_optimizer(cfg.lr_critic, cfg.train_steps * cfg.critic_steps, cfg, scaling)
        # A pretrained encoder may learn more slowly than the decoder that is new to the task.
        e_opt = (make_optimizer(cfg.lr_encoder, cfg.total_steps, cfg, scaling)
                 if cfg.lr_encoder and self.encoder is not None else None)
        # Build optimiser slots for every variable now: stage 1 may train a subset (frozen encoder)
        # and a checkpoint must hold the same variables in every stage.
        self.g_opt.build(self.generator.trainable_variables)
        self.d_opt.build(self.critic.trainable_variables)
        if e_opt is not None:
            e_opt.build(self.encoder.trainable_variables)
        self.average = saving.WeightAverage(self.generator, cfg.ema) if cfg.ema else None
        features = models.perceptual_features(cfg.image_size) if cfg.perceptual_weight else None
        # Set from the training photos' colour prior when the run starts (prior.py), then checkpointed.
        weights = lambda name: tf.Variable(tf.zeros([ab_bins.count_classes()]), trainable=False, name=name)
        self.class_weights = weights("class_weights") if cfg.class_weight else None
        self.l1_weights = weights("l1_weights") if cfg.l1_rebalance < 1 else None
        self.gan = ColorGAN(cfg, self.generator, self.critic, self.g_opt, self.d_opt, e_opt, self.encoder, features,
                            self.class_weights, self.l1_weights)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.data_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_index")
        self.first_bad_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_bad_step")
        self.shard = (1, 0)  # (stride, offset) of this worker's stream; datasets() sets it

    # ----------------------------------------------------------------------------------------------
    # Checkpoints

    def restore(self):
        """Resume from the run dir's newest intact checkpoint, if any: one whose files are cut short,
        damaged or gone is named and passed over. Refuses a checkpoint of another model."""
        def restore(prefix):
            checkpoint = self.checkpoint
            if self.average:  # the averages as this checkpoint keys them: by position, or by path in older ones
                checkpoint = tf.train.Checkpoint(**{**self._checkpointed,
                                                    "generator_ema": self.average.checkpointed_as(prefix)})
            try:
                # expect_partial: what does not fit is said in one line below, not in a page of warnings.
                checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
                raise ColorganError(
                    f"checkpoint {prefix} does not fit this run's models ({str(e).splitlines()[0][:120]}); "
                    "use another --logdir, or the flags that run was started with (its flags.cfg)") from None

        prefix, damaged = saving.restore_newest_intact(restore, saving.checkpoints_newest_first(self.manager.directory))
        saving.report_damaged(damaged, prefix, self.manager.directory, "resuming from")
        return prefix

    def save(self):
        try:
            return self.manager.save(checkpoint_number=int(self.step.numpy()))
        except (OSError, tf.errors.OpError) as e:
            # TF writes into ckpt-N_temp and renames when done: drop the half-written attempt.
            for leftover in tf.io.gfile.glob(os.path.join(self.manager.directory, "*_temp")):
                tf.io.gfile.rmtree(leftover)
            raise ColorganError(f"could not write a checkpoint to {self.manager.directory} "
                                f"({str(e).splitlines()[0][:120]}); free disk space or change --logdir. "
                                f"The previous checkpoint ({self.manager.latest_checkpoint}) is intact") from None

    # ----------------------------------------------------------------------------------------------
    # Compiled steps: the GAN's per-replica updates under the strategy, one tf.function per stage

    def _distributed(self, replica_fn, with_step):
        """One compiled training step that also keeps the run's books in the graph: the step counter, the
        stream position to resume from, and the first step whose losses were not finite. The host reads
        them only when it logs, validates or saves, so it never waits on the device in between."""
        compiled = tf.function(replica_fn, jit_compile=self.cfg.jit_compile, reduce_retracing=True)

        @tf.function
        def step(l, ab, index):
            args = (l, ab, self.step.read_value()) if with_step else (l, ab)
            per_replica = self.strategy.run(compiled, args=args)
            if self.average is not None:  # cross-replica context: one update of the mirrored averages
                self.average.update()
            logs = {k: self.strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}
            self.step.assign_add(1)
            if index is not None:  # None: a batch held in memory (tests, benchmarks), no stream to follow
                # This host's newest example; its own next index is that plus the stride, and the stream
                # adds the worker's offset to the position it is given.
                newest = tf.reduce_max([tf.reduce_max(i) for i in self.strategy.experimental_local_results(index)])
                self.data_index.assign(newest - self.shard[1] + self.shard[0])
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in logs.values()])
            first_bad = tf.logical_and(tf.logical_not(finite), tf.equal(self.first_bad_step, 0))
            self.first_bad_step.assign(tf.where(first_bad, self.step, self.first_bad_step))
            return logs
        return step

    def pretrain_step(self, l, ab, index=None):
        if self._pretrain_fn is None:
            if self.encoder is not None and self.cfg.freeze_encoder_in_pretrain:
                self.encoder.trainable = False
            self._pretrain_fn = self._distributed(self.gan.pretrain_update, with_step=True)
        return self._pretrain_fn(l, ab, index)

    def adversarial_step(self, l, ab, index=None):
        if self._adversarial_fn is None:
            if self.encoder is not None and not self.cfg.train_hints_only:
                self.encoder.trainable = True
            self._adversarial_fn = self._distributed(self.gan.adversarial_update, with_step=True)
        return self._adversarial_fn(l, ab, index)

    def check_finite(self, logs=None):
        """Raise, naming the step, if any step so far had a loss that was not finite."""
        bad = int(self.first_bad_step.numpy())
        if bad:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items() if not math.isfinite(v))
            raise ColorganError(
                f"loss is not finite at step {bad}{f' ({shown} by step {int(self.step.numpy())})' if shown else ''}; "
                + self._stopped_without_saving())

    def _stopped_without_saving(self):
        return (f"stopped without saving. The last good checkpoint is {self.manager.latest_checkpoint}; "
                "lower the learning rates, use --clip_norm, or check the data")

    def check_weights_finite(self):
        """Raise before a save if a weight (or its average) is not finite. The losses can stay finite when
        weights are not: a hint branch whose weights had all gone NaN trained on for 500 steps with finite
        losses in the compiled step (where NaN through a ReLU can come out as 0), and wrote NaN checkpoints."""
        models = [("generator", self.generator.weights), ("critic", self.critic.weights)]
        if self.average is not None:
            models.append(("generator average", [average for average, _ in self.average.pairs()]))
        for name, weights in models:
            bad = [getattr(w, "path", w.name) for w in weights
                   if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(tf.convert_to_tensor(w), tf.float32))))]
            if bad:
                raise ColorganError(
                    f"{name} weights are not finite at step {int(self.step.numpy())} ({len(bad)}: {', '.join(bad[:3])}"
                    f"{', ...' if len(bad) > 3 else ''}); " + self._stopped_without_saving())

    # ----------------------------------------------------------------------------------------------
    # Data and validation

    def datasets(self, start_index):
        cfg = self.cfg
        common = dict(image_size=cfg.image_size, seed=cfg.seed, deterministic=cfg.deterministic,
                      download=cfg.download, data_dir=cfg.data_dir or None, val_share=cfg.val_share)

        def train_fn(ctx):
            # This worker's (stride, offset) in the stream: file streams interleave the workers' indices,
            # a TFDS stream counts each worker's own photos.
            self.shard = ((1, 0) if cfg.data.startswith("tfds:")
                          else (ctx.num_input_pipelines, ctx.input_pipeline_id))
            return data.make_dataset(
                cfg.data, "train", batch_size=ctx.get_per_replica_batch_size(cfg.batch_size), training=True,
                cache=cfg.cache, skip_gray=cfg.skip_gray, min_colourfulness=cfg.min_colourfulness,
                source_weights=self.source_weights,
                start_index=start_index, with_stats=True,
                shard=(ctx.num_input_pipelines, ctx.input_pipeline_id), **common)

        self.check_usable_photos()
        train = self.strategy.distribute_datasets_from_function(train_fn)
        val_source, val_split = (cfg.val_data, "all") if cfg.val_data else (cfg.data, "val")
        val = data.make_dataset(val_source, val_split, batch_size=cfg.val_images, training=False,
                                skip_gray=False, drop_remainder=False, resize="straight", **common)
        val_batch = next(iter(val), None)
        if val_batch is None:
            raise ColorganError(f"validation source {val_source!r} gave no readable photos")
        return train, val_batch, self.files_per_epoch

    def check_usable_photos(self):
        """Fail now, with the fix, when no training photo can be used (the endless stream would spin)."""
        cfg = self.cfg
        usable = lambda skip_gray, min_cf: data.has_usable_photo(
            cfg.data, "train", cfg.image_size, skip_gray, min_cf, cfg.val_share, cfg.download, cfg.data_dir or None)
        if usable(cfg.skip_gray, cfg.min_colourfulness):
            return
        if cfg.skip_gray and usable(False, 0.0):
            dull = f" or less colourful than --min_colourfulness={cfg.min_colourfulness}" if cfg.min_colourfulness else ""
            raise ColorganError(f"no usable training photo in {cfg.data}: every readable one is grayscale{dull}; "
                                "add colour photos, or pass --noskip_gray (or a lower --min_colourfulness) to "
                                "train on them anyway")
        raise ColorganError(f"no usable training photo in {cfg.data}: none of its files can be read as an image; "
                            "check the folder (JPEG, PNG, BMP, GIF, WebP or TIFF photos)")

    def predict_exported(self, l, hint_maps=None):
        """What the run exports would predict: the weight averages when --ema is on, swapped in for the call.
        A generator that takes hints gets ``hint_maps``, or none (automatic colouring)."""
        inputs = [l, tf.zeros([*l.shape[:-1], hints.CHANNELS]) if hint_maps is None else hint_maps] \
            if self.gan.takes_hints else l
        if self.average is None:
            return tf.cast(self.generator(inputs, training=False), tf.float32)
        raw = [w.numpy() for w in self.generator.weights]
        self.average.copy_to_model()
        try:
            return tf.cast(self.generator(inputs, training=False), tf.float32)
        finally:
            for w, value in zip(self.generator.weights, raw):
                w.assign(value)

    def validate(self, val_batch):
        """Scores of the exported weights on the fixed validation batch (uint8 RGB, as evaluate.py), and
        its image grid. A generator that takes hints is scored without them (val/psnr and the rest) and with
        VAL_HINTS simulated ones (val/psnr_hints)."""
        l, ab = val_batch
        fake = self.predict_exported(l)
        to_uint8 = lambda x: tf.image.convert_image_dtype(x, tf.uint8, saturate=True).numpy()
        real_rgb, fake_rgb = to_uint8(color.model_to_rgb(l, ab)), to_uint8(color.model_to_rgb(l, fake))
        psnr, _ = metrics.mean_finite(metrics.psnr(real_rgb, fake_rgb))
        fake_cf, real_cf = metrics.colourfulness(fake_rgb).mean(), metrics.colourfulness(real_rgb).mean()
        scores = {
            "val/l1": float(tf.reduce_mean(tf.abs(fake - ab))),
            "val/psnr": psnr if psnr is not None else float("inf"),
            "val/colourfulness": float(fake_cf),
            "val/colourfulness_real": float(real_cf),
            "val/delta_colourfulness": float(fake_cf - real_cf),
        }
        if self.gan.takes_hints:
            maps = hints.simulate(ab, [self.cfg.seed, 0], count=VAL_HINTS, max_patch=self.cfg.hint_max_patch)
            hinted = to_uint8(color.model_to_rgb(l, self.predict_exported(l, maps)))
            psnr, _ = metrics.mean_finite(metrics.psnr(real_rgb, hinted))
            scores["val/psnr_hints"] = psnr if psnr is not None else float("inf")
        return scores, image_grid(l[:8], fake[:8], ab[:8])


# --------------------------------------------------------------------------------------------------
# The loop


def train(cfg, on_step=None, start=None, after_save=None):
    """Run (or resume) training as configured. Returns a dict of final metrics and output paths.

    on_step(step, logs) is called after every step (tests use it to interrupt at a chosen step).
    start: (step, stream index) to continue from, with the models as --init_from gave them, instead of
        the run dir's checkpoint (stages.py: a run's state kept in the repository).
    after_save(trainer, step, stopping) is called after every checkpoint (stages.py writes the run's state).
    """
    t = Trainer(cfg)
    restored = t.restore() if start is None else None
    if start is not None:
        t.step.assign(start[0])
        t.data_index.assign(start[1])
    start_step = int(t.step.numpy())
    if t.chief:
        saving.save_run_config(cfg.logdir, cfg.generator, t.generator_options, cfg.image_size,
                               critic=cfg.critic, critic_options=t.critic_options, objective=cfg.objective,
                               ema=cfg.ema, precision=t.precision)
        write_flagfile(cfg, os.path.join(cfg.logdir, "flags.cfg"))
    logging.info("%s at step %d of %d (%d replicas, %s)", f"resumed from {restored}" if restored else "starting",
                 start_step, cfg.total_steps, t.strategy.num_replicas_in_sync, t.arithmetic)

    rebalanced = [(name, w, mix) for name, w, mix in (("class loss", t.class_weights, cfg.class_rebalance),
                                                      ("L1", t.l1_weights, cfg.l1_rebalance)) if w is not None]
    if rebalanced and not restored:
        prior = colour_prior(cfg)
        for name, w, mix in rebalanced:
            w.assign(ab_bins.rebalancing_weights(prior, mix))
            logging.info("%s rebalanced (lambda %g): weights %.2f..%.2f", name, mix,
                         float(tf.reduce_min(w)), float(tf.reduce_max(w)))
    train_ds, val_batch, files_per_epoch = t.datasets(int(t.data_index.numpy()))
    writer = (tf.summary.create_file_writer(cfg.logdir) if t.chief else tf.summary.create_noop_writer())
    shown = ["stage", "img/s", "l1", "gan", "critic_loss"]
    progress = keras.utils.Progbar(cfg.total_steps, stateful_metrics=shown, unit_name="step") \
        if (cfg.progress and t.chief) else None
    stop = StopRequested()
    iterator = iter(train_ds)
    source_names = [name for name, _, _ in sources.parse_sources(cfg.data)]
    skips = data.EpochSkips(files_per_epoch, int(t.data_index.numpy())) if files_per_epoch else None
    clock = Clock(cfg.batch_size, start_step)
    result = {"stopped_by": None, "logs": {}}
    step = start_step
    try:
        with writer.as_default():
            while step < cfg.total_steps:
                l, ab, stats = next(iterator)
                stage = 1 if step < cfg.pretrain_steps else 2
                logs = (t.pretrain_step if stage == 1 else t.adversarial_step)(l, ab, stats["index"])
                step += 1
                due = {what: step % every == 0 or step == cfg.total_steps for what, every in (
                    ("log", cfg.log_every), ("eval", cfg.eval_every), ("save", cfg.checkpoint_every))}
                if any(due.values()) or stop.signal or on_step is not None:
                    # The only host reads of the step's results: at log, validation and save steps.
                    logs = {k: float(v) for k, v in logs.items()}
                    t.check_finite(logs)
                    result["logs"] = logs
                    if skips is not None:
                        log_epoch_skips(skips, newest_stats(t.strategy, stats), step, result, source_names)
                if due["log"]:
                    log_scalars(t, logs, stage, step, clock.images_per_second(step), progress is None)
                if due["eval"]:
                    scores, grid = t.validate(val_batch)
                    for k, v in scores.items():
                        tf.summary.scalar(k, v, step=step)
                    tf.summary.image("val/gray_predicted_real", grid[None], step=step)
                    result.update(scores)
                if due["save"]:
                    t.check_weights_finite()
                    t.save()
                    if after_save is not None:
                        after_save(t, step, False)
                if progress is not None:
                    values = [("stage", stage), ("img/s", clock.since_start(step))]
                    if isinstance(next(iter(logs.values()), None), float):
                        values += [(k.split("/")[-1] if k.startswith("generator") else k.replace("/", "_"), v)
                                   for k, v in logs.items() if k in ("generator/l1", "generator/gan", "critic/loss")]
                    progress.update(step, values)
                if on_step is not None:
                    on_step(step, logs)
                if stop.signal:
                    t.check_weights_finite()
                    t.save()
                    if after_save is not None:
                        after_save(t, step, True)
                    logging.info("%s received: saved checkpoint at step %d; rerun the same command to resume",
                                 stop.signal, step)
                    result["stopped_by"] = stop.signal
                    break
        writer.flush()
    finally:
        stop.restore()

    result.update(step=int(t.step.numpy()), checkpoint=t.manager.latest_checkpoint, logdir=cfg.logdir, trainer=t)
    if result["stopped_by"] is None and t.chief:
        result.update(finish(t, val_batch))
    return result


# A fresh generator predicts nearly gray (tanh of small values), so its L1 is about gray's; one that
# diverged paints saturated nonsense, several times further from the truth than gray.
DIVERGED_L1_RATIO = 1.5


def check_not_diverged(val_l1, val_ab, logdir):
    """Refuse to export a generator that is worse than painting every photo gray."""
    gray_l1 = float(tf.reduce_mean(tf.abs(tf.cast(val_ab, tf.float32))))
    if not val_l1 <= DIVERGED_L1_RATIO * gray_l1:  # also catches NaN
        raise ColorganError(
            f"training diverged: validation L1 {val_l1:.3f} is {val_l1 / gray_l1:.1f}x that of gray output "
            f"({gray_l1:.3f}); nothing exported, any earlier generator.keras in {logdir} is kept. Lower the "
            "learning rates or use --clip_norm, and train again in a fresh --logdir")


def finish(t, val_batch):
    """Final outputs of a finished run: the sample grid, generator.keras (the averages with --ema) and critic.keras."""
    cfg = t.cfg
    if t.average is not None:
        t.average.copy_to_model()
    outputs = {}
    scores, grid = t.validate(val_batch)
    outputs["samples"] = os.path.join(cfg.logdir, "samples.png")
    write_png(outputs["samples"], grid)
    check_not_diverged(scores["val/l1"], val_batch[1], cfg.logdir)
    if cfg.export:  # the SavedModel is the train command's (export sits a layer above training)
        outputs["generator"] = str(saving.save_generator(t.generator, os.path.join(cfg.logdir, "generator.keras")))
        if cfg.train_steps:  # a critic that has trained, for --init_critic_from in a later run
            outputs["critic"] = str(saving.save_generator(t.critic, os.path.join(cfg.logdir, "critic.keras")))
    return outputs
