"""The training loop: L1 pretraining of the generator, then conditional-GAN training.

One path, top to bottom (nanoGPT style): config -> strategy -> data -> models and optimisers ->
checkpoint restore -> a loop over steps with one compiled step per stage -> logs, checkpoints, export.
The step counter alone decides the stage, the learning rate, and every random draw of the GAN step,
so a run resumed from a checkpoint continues the same schedule.
"""
import dataclasses
import math
import os
import signal
import time

import keras
import tensorflow as tf
from absl import logging

from colorgan import color, data, losses, metrics, models
from colorgan.errors import ColorganError


@dataclasses.dataclass
class TrainConfig:
    """Every knob of a run; train.py turns each field into an absl flag of the same name."""
    # data
    data: str = dataclasses.field(default="samples", metadata={"help": "Training source: samples, folder:PATH or tfds:NAME."})
    val_data: str = dataclasses.field(default="", metadata={"help": "Validation source; empty: the validation split of --data."})
    val_share: float = dataclasses.field(default=0.05, metadata={"help": "Share of a folder that goes to validation (fixed hash of the path)."})
    val_images: int = dataclasses.field(default=32, metadata={"help": "Validation photos scored every --eval_every steps."})
    image_size: int = dataclasses.field(default=256, metadata={"help": "Training crop size in pixels."})
    batch_size: int = dataclasses.field(default=16, metadata={"help": "Global batch size, split across replicas."})
    download: bool = dataclasses.field(default=False, metadata={"help": "Let TFDS download a missing dataset."})
    data_dir: str = dataclasses.field(default="", metadata={"help": "TFDS data directory; empty: the TFDS default."})
    cache: bool = dataclasses.field(default=False, metadata={"help": "Hold the encoded training photos in memory."})
    skip_gray: bool = dataclasses.field(default=True, metadata={"help": "Drop grayscale photos from training."})
    deterministic: bool = dataclasses.field(default=False, metadata={"help": "Identical batches and ops on every run (slower)."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed for weights, data order and augmentation."})
    # models
    generator: str = dataclasses.field(default="unet", metadata={"help": "unet | resunet | backbone:efficientnet_lite0 (offline ImageNet weights) | backbone:resnet50 | backbone:mobilenet_v2 | backbone:efficientnet_b0."})
    generator_options: str = dataclasses.field(default="", metadata={"help": "Builder options as key=value,... e.g. base_filters=16,depth=6."})
    critic: str = dataclasses.field(default="patchgan", metadata={"help": "Critic architecture."})
    critic_options: str = dataclasses.field(default="", metadata={"help": "Critic options as key=value,... e.g. norm=instance."})
    freeze_encoder_in_pretrain: bool = dataclasses.field(default=True, metadata={"help": "Backbone U-Nets: keep the encoder frozen during L1 pretraining."})
    # objective
    objective: str = dataclasses.field(default="vanilla", metadata={"help": "vanilla | lsgan | wgan-gp, each plus l1_weight x L1."})
    l1_weight: float = dataclasses.field(default=100.0, metadata={"help": "Weight of the L1 term in the generator loss."})
    gp_weight: float = dataclasses.field(default=10.0, metadata={"help": "WGAN-GP gradient-penalty weight."})
    critic_steps: int = dataclasses.field(default=1, metadata={"help": "Critic updates per generator update (5 is usual for WGAN-GP)."})
    # optimisation
    pretrain_steps: int = dataclasses.field(default=0, metadata={"help": "Stage 1: generator-only L1 steps."})
    train_steps: int = dataclasses.field(default=1000, metadata={"help": "Stage 2: adversarial steps (generator updates)."})
    lr_generator: float = dataclasses.field(default=2e-4, metadata={"help": "Adam learning rate of the generator."})
    lr_critic: float = dataclasses.field(default=2e-4, metadata={"help": "Adam learning rate of the critic."})
    beta1: float = dataclasses.field(default=0.5, metadata={"help": "Adam beta1."})
    beta2: float = dataclasses.field(default=0.999, metadata={"help": "Adam beta2."})
    lr_decay: str = dataclasses.field(default="none", metadata={"help": "none | linear | cosine decay to zero over each optimiser's steps."})
    clip_norm: float = dataclasses.field(default=0.0, metadata={"help": "Global gradient-norm clipping; 0: off."})
    ema: float = dataclasses.field(default=0.0, metadata={"help": "Generator weight EMA momentum (e.g. 0.999); 0: off. The export uses the EMA weights."})
    # execution
    strategy: str = dataclasses.field(default="default", metadata={"help": "default | mirrored | multi_worker | tpu."})
    jit_compile: bool = dataclasses.field(default=False, metadata={"help": "Compile the train step with XLA."})
    mixed_precision: str = dataclasses.field(default="", metadata={"help": "Empty (float32) | float16 (with loss scaling) | bfloat16."})
    # outputs
    logdir: str = dataclasses.field(default="runs/default", metadata={"help": "Run directory: TensorBoard logs, checkpoints, samples, exports."})
    log_every: int = dataclasses.field(default=50, metadata={"help": "Steps between scalar summaries."})
    eval_every: int = dataclasses.field(default=500, metadata={"help": "Steps between validation scores and image grids."})
    checkpoint_every: int = dataclasses.field(default=500, metadata={"help": "Steps between checkpoints."})
    keep_checkpoints: int = dataclasses.field(default=3, metadata={"help": "Checkpoints kept on disk."})
    export: bool = dataclasses.field(default=True, metadata={"help": "At the end, save generator.keras and a SavedModel under LOGDIR/export."})
    progress: bool = dataclasses.field(default=True, metadata={"help": "Show a progress bar."})

    @property
    def total_steps(self):
        return self.pretrain_steps + self.train_steps


STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("", "float16", "bfloat16")
LR_DECAYS = ("none", "linear", "cosine")


def parse_options(text):
    """'a=1,b=x,c=true' -> {'a': 1, 'b': 'x', 'c': True}."""
    options = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ColorganError(f"bad option {item!r}: write options as key=value,key=value")
        value = value.strip()
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        else:
            value = {"true": True, "false": False}.get(value.lower(), value)
        options[key.strip()] = value
    return options


def validate(cfg):
    """Refuse impossible settings before any work starts, each with the fix."""
    for name in ("image_size", "batch_size", "val_images", "log_every", "eval_every", "checkpoint_every",
                 "keep_checkpoints", "critic_steps"):
        if getattr(cfg, name) < 1:
            raise ColorganError(f"--{name} must be positive, got {getattr(cfg, name)}")
    for name in ("pretrain_steps", "train_steps", "l1_weight", "gp_weight", "clip_norm"):
        if getattr(cfg, name) < 0:
            raise ColorganError(f"--{name} must not be negative, got {getattr(cfg, name)}")
    if cfg.total_steps < 1:
        raise ColorganError("nothing to train: set --pretrain_steps or --train_steps above 0")
    if cfg.objective not in losses.OBJECTIVES:
        raise ColorganError(f"unknown --objective {cfg.objective!r}: use one of {', '.join(losses.OBJECTIVES)}")
    for name, allowed in (("strategy", STRATEGIES), ("mixed_precision", PRECISIONS), ("lr_decay", LR_DECAYS)):
        if getattr(cfg, name) not in allowed:
            raise ColorganError(f"unknown --{name} {getattr(cfg, name)!r}: use one of {', '.join(map(repr, allowed))}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ColorganError(f"--ema must be in [0, 1), got {cfg.ema}")
    if not 0.0 < cfg.val_share < 1.0:
        raise ColorganError(f"--val_share must be between 0 and 1, got {cfg.val_share}")
    data.parse_source(cfg.data)
    if cfg.val_data:
        data.parse_source(cfg.val_data)
    parse_options(cfg.generator_options)
    critic_norm = parse_options(cfg.critic_options).get("norm", "batch")
    if cfg.objective == "wgan-gp" and critic_norm == "batch":
        raise ColorganError("WGAN-GP with a batch-norm critic: batch norm couples the examples that the "
                            "gradient penalty treats one by one; add --critic_options=norm=instance (or layer, none)")


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


def make_optimizer(lr, steps, cfg, ema=False):
    if cfg.lr_decay == "linear" and steps:
        lr = keras.optimizers.schedules.PolynomialDecay(lr, steps, end_learning_rate=0.0)
    elif cfg.lr_decay == "cosine" and steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, steps)
    kwargs = {"global_clipnorm": cfg.clip_norm} if cfg.clip_norm else {}
    if ema:
        kwargs.update(use_ema=True, ema_momentum=cfg.ema)
    opt = keras.optimizers.Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2, **kwargs)
    if cfg.mixed_precision == "float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def current_lr(opt):
    # Keras evaluates the schedule at the optimiser's iteration count; convert_to_tensor also reads
    # a mirrored variable in cross-replica context.
    return float(tf.convert_to_tensor(getattr(opt, "inner_optimizer", opt).learning_rate))


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


class Trainer:
    """Holds the models, optimisers, compiled steps and checkpoint of one run."""

    def __init__(self, cfg):
        validate(cfg)
        self.cfg = cfg
        # Collective ops (multi_worker) must be set up before any other TF op runs.
        self.strategy = make_strategy(cfg.strategy)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(cfg.seed)
        keras.mixed_precision.set_dtype_policy(f"mixed_{cfg.mixed_precision}" if cfg.mixed_precision else "float32")
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise ColorganError(f"--batch_size={cfg.batch_size} does not divide across {replicas} replicas: "
                                f"use a multiple of {replicas}")
        # Fail on a missing dataset now, not after building a 54M-parameter model.
        self.files_per_epoch = data.count_examples(cfg.data, "train", cfg.val_share, cfg.download,
                                                   cfg.data_dir or None)
        self.chief = is_chief(self.strategy)
        self.out_dir = worker_dir(cfg, self.strategy, self.chief)
        self.objective = losses.OBJECTIVES[cfg.objective]()
        self.generator_options = parse_options(cfg.generator_options)
        self.critic_options = parse_options(cfg.critic_options)

        with self.strategy.scope():
            self.generator = models.build_generator(cfg.generator, cfg.image_size, **self.generator_options)
            self.critic = models.build_critic(cfg.critic, cfg.image_size, in_channels=3, **self.critic_options)
            self.g_opt = make_optimizer(cfg.lr_generator, cfg.total_steps, cfg, ema=cfg.ema > 0)
            self.d_opt = make_optimizer(cfg.lr_critic, cfg.train_steps * cfg.critic_steps, cfg)
            # Build optimiser slots for every variable now: stage 1 may train a subset (frozen encoder)
            # and a checkpoint must hold the same variables in every stage.
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.critic.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.data_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_index")
        self.encoder = next((l for l in self.generator.layers if l.name == "encoder"), None)

        os.makedirs(self.out_dir, exist_ok=True)
        self.checkpoint = tf.train.Checkpoint(
            generator=self.generator, critic=self.critic, generator_optimizer=self.g_opt,
            critic_optimizer=self.d_opt, step=self.step, data_index=self.data_index,
            rng=rng_states(self.generator) + rng_states(self.critic))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.out_dir, "checkpoints"), max_to_keep=cfg.keep_checkpoints)
        self._pretrain_fn = self._adversarial_fn = None

    # ----------------------------------------------------------------------------------------------
    # Checkpoints

    def restore(self):
        """Resume from the run dir's latest checkpoint, if any. Refuses a checkpoint of another model."""
        latest = self.manager.latest_checkpoint
        if not latest:
            return None
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ColorganError(
                f"checkpoint {latest} does not fit this run's models ({str(e).splitlines()[0][:120]}); "
                "use another --logdir, or the flags that run was started with (its flags.cfg)") from None
        return latest

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
    # Train steps: per-replica bodies, compiled once per stage

    def _global_mean(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.cfg.batch_size)

    def _apply(self, opt, tape, loss, variables):
        grads = tape.gradient(opt.scale_loss(loss), variables)
        opt.apply(grads, variables)

    def _pretrain_replica(self, l, ab):
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            fake = self.generator(l, training=True)
            loss = self._global_mean(losses.l1(fake, ab))
        self._apply(self.g_opt, tape, loss, variables)
        return {"generator/l1": loss}

    def _adversarial_replica(self, l, ab, step):
        """One generator forward per step, as in pix2pix: the critic learns from the prediction with its
        gradient stopped, then the generator's loss reuses that forward pass through the updated critic.
        With several critic steps (WGAN-GP), each reuses the step's batch and prediction."""
        cfg = self.cfg
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        real = tf.concat([l, ab], axis=-1)
        logs = {}
        with tf.GradientTape() as generator_tape:
            fake_ab = self.generator(l, training=True)
            fake = tf.concat([l, tf.cast(fake_ab, l.dtype)], axis=-1)
            with generator_tape.stop_recording():
                for k in range(cfg.critic_steps):
                    logs.update(self._critic_update(real, tf.stop_gradient(fake), step, k, replica))
            fake_out = self.critic(fake, training=True)
            gan = self._global_mean(self.objective.generator_loss(fake_out))
            l1 = self._global_mean(losses.l1(fake_ab, ab))
            loss = gan + cfg.l1_weight * l1
        self._apply(self.g_opt, generator_tape, loss, self.generator.trainable_variables)
        logs.update({"generator/loss": loss, "generator/gan": gan, "generator/l1": l1})
        return logs

    def _critic_update(self, real, fake, step, k, replica):
        cfg = self.cfg
        batch = tf.shape(real)[0]
        logs = {}
        with tf.GradientTape() as tape:
            real_out = self.critic(real, training=True)
            fake_out = self.critic(fake, training=True)
            per_example = self.objective.critic_loss(real_out, fake_out)
            if self.objective.uses_gradient_penalty:
                # Seeded by (seed, step, k, replica): resumes and replays exactly.
                seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 1000003 + step,
                                 k * 1024 + tf.cast(replica, tf.int64)])
                alpha = tf.random.stateless_uniform([batch, 1, 1, 1], seed)
                penalty = losses.gradient_penalty(self.critic, real, fake, alpha)
                logs["critic/gradient_penalty"] = self._global_mean(penalty)
                logs["critic/wasserstein"] = self._global_mean(-per_example)
                per_example = per_example + cfg.gp_weight * penalty
            else:
                # A patch counts as judged right when its probability (vanilla) or score (LSGAN) is on
                # the correct side of 0.5.
                to_p = tf.sigmoid if cfg.objective == "vanilla" else tf.identity
                real_p = tf.reshape(to_p(tf.cast(real_out, tf.float32)), [batch, -1])
                fake_p = tf.reshape(to_p(tf.cast(fake_out, tf.float32)), [batch, -1])
                logs["critic/accuracy_real"] = self._global_mean(tf.reduce_mean(tf.cast(real_p > 0.5, tf.float32), 1))
                logs["critic/accuracy_fake"] = self._global_mean(tf.reduce_mean(tf.cast(fake_p < 0.5, tf.float32), 1))
            critic_loss = self._global_mean(per_example)
        self._apply(self.d_opt, tape, critic_loss, self.critic.trainable_variables)
        logs["critic/loss"] = critic_loss
        return logs

    def _distributed(self, replica_fn):
        compiled = tf.function(replica_fn, jit_compile=self.cfg.jit_compile, reduce_retracing=True)

        @tf.function
        def step(l, ab, *args):
            per_replica = self.strategy.run(compiled, args=(l, ab, *args))
            return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}
        return step

    def pretrain_step(self, l, ab):
        if self._pretrain_fn is None:
            if self.encoder is not None and self.cfg.freeze_encoder_in_pretrain:
                self.encoder.trainable = False
            self._pretrain_fn = self._distributed(self._pretrain_replica)
        return self._pretrain_fn(l, ab)

    def adversarial_step(self, l, ab):
        if self._adversarial_fn is None:
            if self.encoder is not None:
                self.encoder.trainable = True
            self._adversarial_fn = self._distributed(self._adversarial_replica)
        return self._adversarial_fn(l, ab, self.step.read_value())

    # ----------------------------------------------------------------------------------------------
    # Data

    def datasets(self, start_index):
        cfg = self.cfg
        common = dict(image_size=cfg.image_size, seed=cfg.seed, deterministic=cfg.deterministic,
                      download=cfg.download, data_dir=cfg.data_dir or None, val_share=cfg.val_share)

        def train_fn(ctx):
            return data.make_dataset(
                cfg.data, "train", batch_size=ctx.get_per_replica_batch_size(cfg.batch_size), training=True,
                cache=cfg.cache, skip_gray=cfg.skip_gray, start_index=start_index, with_stats=True,
                shard=(ctx.num_input_pipelines, ctx.input_pipeline_id), **common)

        train = self.strategy.distribute_datasets_from_function(train_fn)
        val_source, val_split = (cfg.val_data, "all") if cfg.val_data else (cfg.data, "val")
        val = data.make_dataset(val_source, val_split, batch_size=cfg.val_images, training=False,
                                skip_gray=False, drop_remainder=False, **common)
        val_batch = next(iter(val), None)
        if val_batch is None:
            raise ColorganError(f"validation source {val_source!r} gave no readable photos")
        return train, val_batch, self.files_per_epoch

    # ----------------------------------------------------------------------------------------------
    # Validation

    def validate(self, val_batch):
        """Scores on the fixed validation batch (uint8 RGB, as evaluate.py) and its image grid."""
        l, ab = val_batch
        fake = tf.cast(self.generator(l, training=False), tf.float32)
        to_uint8 = lambda x: tf.image.convert_image_dtype(x, tf.uint8, saturate=True).numpy()
        real_rgb, fake_rgb = to_uint8(color.model_to_rgb(l, ab)), to_uint8(color.model_to_rgb(l, fake))
        psnr, _ = metrics.mean_finite(metrics.psnr(real_rgb, fake_rgb))
        return {
            "val/l1": float(tf.reduce_mean(tf.abs(fake - ab))),
            "val/psnr": psnr if psnr is not None else float("inf"),
            "val/colourfulness": float(metrics.colourfulness(fake_rgb).mean()),
            "val/colourfulness_real": float(metrics.colourfulness(real_rgb).mean()),
        }, image_grid(l[:8], fake[:8], ab[:8])


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


def write_flagfile(cfg, path):
    """The full resolved configuration as an absl flagfile, so the run can be repeated exactly."""
    lines = [f"--{f.name}={getattr(cfg, f.name)}" if not isinstance(getattr(cfg, f.name), bool)
             else (f"--{f.name}" if getattr(cfg, f.name) else f"--no{f.name}")
             for f in dataclasses.fields(cfg)]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def train(cfg, on_step=None):
    """Run (or resume) training as configured. Returns a dict of final metrics and output paths.

    on_step(step, logs) is called after every step (tests use it to interrupt at a chosen step).
    """
    t = Trainer(cfg)
    restored = t.restore()
    start_step = int(t.step.numpy())
    if t.chief:
        models.save_run_config(cfg.logdir, cfg.generator, t.generator_options, cfg.image_size,
                               critic=cfg.critic, critic_options=t.critic_options, objective=cfg.objective,
                               ema=cfg.ema)
        write_flagfile(cfg, os.path.join(cfg.logdir, "flags.cfg"))
    logging.info("%s at step %d of %d (%d replicas)", f"resumed from {restored}" if restored else "starting",
                 start_step, cfg.total_steps, t.strategy.num_replicas_in_sync)

    train_ds, val_batch, files_per_epoch = t.datasets(int(t.data_index.numpy()))
    writer = (tf.summary.create_file_writer(cfg.logdir) if t.chief else tf.summary.create_noop_writer())
    progress = keras.utils.Progbar(cfg.total_steps, stateful_metrics=["stage", "img/s"], unit_name="step") \
        if (cfg.progress and t.chief) else None
    stop = StopRequested()
    iterator = iter(train_ds)
    last_logs, epoch, epoch_counts = {}, None, (0, 0)
    images_seen_since, clock = 0, time.perf_counter()
    started = clock
    result = {"stopped_by": None}

    def host_max(per_replica):
        """Largest value of a per-example stat over this host's replicas (the newest, as it is cumulative)."""
        return max(int(tf.reduce_max(x)) for x in t.strategy.experimental_local_results(per_replica))

    try:
        with writer.as_default():
            while int(t.step.numpy()) < cfg.total_steps:
                step = int(t.step.numpy())
                l, ab, stats = next(iterator)
                pretraining = step < cfg.pretrain_steps
                logs = t.pretrain_step(l, ab) if pretraining else t.adversarial_step(l, ab)
                t.step.assign_add(1)
                step += 1
                index = host_max(stats["index"])
                t.data_index.assign(index + 1)
                images_seen_since += cfg.batch_size
                logs = {k: float(v) for k, v in logs.items()}
                if not all(math.isfinite(v) for v in logs.values()):
                    bad = ", ".join(f"{k}={v}" for k, v in logs.items() if not math.isfinite(v))
                    raise ColorganError(
                        f"loss is not finite at step {step} ({bad}); stopped without saving. The last good "
                        f"checkpoint is {t.manager.latest_checkpoint}; lower the learning rates, use "
                        "--clip_norm, or check the data")
                last_logs = logs

                if files_per_epoch:
                    counts = {k: host_max(stats[k]) for k in ("unreadable", "gray", "unreadable_in_epoch", "gray_in_epoch")}
                    this_epoch = index // files_per_epoch
                    if epoch is not None and this_epoch != epoch:
                        # Totals up to the end of the finished epoch: all counts less this epoch's so far.
                        unread = counts["unreadable"] - counts["unreadable_in_epoch"]
                        gray = counts["gray"] - counts["gray_in_epoch"]
                        skipped = (unread - epoch_counts[0], gray - epoch_counts[1])
                        tf.summary.scalar("data/unreadable_per_epoch", skipped[0], step=step)
                        tf.summary.scalar("data/gray_per_epoch", skipped[1], step=step)
                        # Every epoch goes to TensorBoard; the terminal hears only when something was skipped.
                        if any(skipped):
                            logging.info("epoch %d: skipped %d unreadable and %d grayscale of %d photos",
                                         epoch, *skipped, files_per_epoch)
                        epoch_counts = (unread, gray)
                    epoch = this_epoch
                    result["unreadable"], result["gray"] = counts["unreadable"], counts["gray"]

                if step % cfg.log_every == 0 or step == cfg.total_steps:
                    now = time.perf_counter()
                    logs_out = dict(logs, **{"speed/images_per_second": images_seen_since / (now - clock),
                                             "lr/generator": current_lr(t.g_opt),
                                             "lr/critic": current_lr(t.d_opt), "stage": 1 if pretraining else 2})
                    for k, v in logs_out.items():
                        tf.summary.scalar(k, v, step=step)
                    if progress is None and t.chief:  # logs under a scheduler, where no bar is drawn
                        logging.info("step %d/%d stage %d %s %.1f img/s", step, cfg.total_steps,
                                     logs_out["stage"], " ".join(f"{k}={v:.4g}" for k, v in logs.items()),
                                     logs_out["speed/images_per_second"])
                    images_seen_since, clock = 0, now
                if step % cfg.eval_every == 0 or step == cfg.total_steps:
                    scores, grid = t.validate(val_batch)
                    for k, v in scores.items():
                        tf.summary.scalar(k, v, step=step)
                    tf.summary.image("val/gray_predicted_real", grid[None], step=step)
                    result.update(scores)
                if step % cfg.checkpoint_every == 0 or step == cfg.total_steps:
                    t.save()
                if progress is not None:
                    speed = cfg.batch_size * (step - start_step) / (time.perf_counter() - started)
                    progress.update(step, [("stage", 1 if pretraining else 2), ("img/s", speed)] +
                                    [(k.split("/")[-1] if k.startswith("generator") else k.replace("/", "_"), v)
                                     for k, v in logs.items() if k in ("generator/l1", "generator/gan", "critic/loss")])
                if on_step is not None:
                    on_step(step, logs)
                if stop.signal:
                    t.save()
                    logging.info("%s received: saved checkpoint at step %d; rerun the same command to resume",
                                 stop.signal, step)
                    result["stopped_by"] = stop.signal
                    break
        writer.flush()
    finally:
        stop.restore()

    result.update(step=int(t.step.numpy()), logs=last_logs, checkpoint=t.manager.latest_checkpoint,
                  logdir=cfg.logdir, trainer=t)
    if result["stopped_by"] is None and t.chief:
        result.update(finish(t, val_batch))
    return result


def finish(t, val_batch):
    """Final outputs of a finished run: sample grid, generator.keras and (optionally) a SavedModel."""
    cfg = t.cfg
    if cfg.ema:
        inner = getattr(t.g_opt, "inner_optimizer", t.g_opt)
        inner.finalize_variable_values(t.generator.trainable_variables)
    outputs = {}
    _, grid = t.validate(val_batch)
    outputs["samples"] = os.path.join(cfg.logdir, "samples.png")
    write_png(outputs["samples"], grid)
    if cfg.export:
        outputs["generator"] = str(models.save_generator(t.generator, os.path.join(cfg.logdir, "generator.keras")))
        try:
            from colorgan import export as exporter
        except ImportError:
            exporter = None
        if exporter is not None and hasattr(exporter, "export_saved_model"):
            outputs["saved_model"] = exporter.export_saved_model(
                t.generator, cfg.image_size, os.path.join(cfg.logdir, "export"), name="colorgan",
                source=t.manager.latest_checkpoint)
    return outputs
