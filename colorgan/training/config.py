"""What a training run is: every knob as one dataclass (train flags are its fields), checked before any
work starts, and written back as a flagfile so that the run can be repeated."""
import dataclasses
import os

import tensorflow as tf

from colorgan import losses, memory, outputs, sources
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
    cache: bool = dataclasses.field(default=False, metadata={"help": "Decode every training photo once and hold its pixels in memory."})
    skip_gray: bool = dataclasses.field(default=True, metadata={"help": "Drop grayscale photos from training."})
    source_weights: str = dataclasses.field(default="", metadata={"help": "Weights of the training sources as SOURCE=WEIGHT,...: a photo's source is its first folder below the data folder, else its file name up to the first '_' (e.g. clothing=0.5,imagenette=2); 0 leaves a source out, 1.5 repeats half its photos."})
    min_colourfulness: float = dataclasses.field(default=0.0, metadata={"help": "With --skip_gray, also drop training crops less colourful than this (0..255 Hasler-Suesstrunk scale; real photos ~37, sepia ~5-15); 0: off."})
    deterministic: bool = dataclasses.field(default=False, metadata={"help": "Identical batches and ops on every run (slower)."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed for weights, data order and augmentation."})
    # models
    generator: str = dataclasses.field(default="unet", metadata={"help": "unet | resunet | backbone:efficientnet_lite0, _lite1 or _lite2 (offline ImageNet weights) | backbone:resnet50 | backbone:mobilenet_v2 | backbone:efficientnet_b0."})
    generator_options: str = dataclasses.field(default="", metadata={"help": "Builder options as key=value,... e.g. base_filters=16,depth=6."})
    critic: str = dataclasses.field(default="patchgan", metadata={"help": "patchgan (the 70x70 PatchGAN) | projected (patch critics on frozen ImageNet EfficientNet-Lite features)."})
    critic_options: str = dataclasses.field(default="", metadata={"help": "Critic options as key=value,... e.g. norm=instance (patchgan), strides=4/8/16 (projected)."})
    freeze_encoder_in_pretrain: bool = dataclasses.field(default=True, metadata={"help": "Backbone U-Nets: keep the encoder frozen during L1 pretraining."})
    init_from: str = dataclasses.field(default="", metadata={"help": "Start the generator from this .keras file (e.g. models/colorgan-lite0.keras); a checkpoint in --logdir still wins."})
    init_critic_from: str = dataclasses.field(default="", metadata={"help": "Start the critic from this .keras file (a run's critic.keras)."})
    # objective
    objective: str = dataclasses.field(default="vanilla", metadata={"help": "vanilla | lsgan | wgan-gp, each plus l1_weight x L1."})
    l1_weight: float = dataclasses.field(default=100.0, metadata={"help": "Weight of the L1 term in the stage-2 generator loss."})
    pretrain_l1_weight: float = dataclasses.field(default=1.0, metadata={"help": "Weight of the L1 term in stage 1 (relative to the colour terms)."})
    gan_weight: float = dataclasses.field(default=1.0, metadata={"help": "Weight of the adversarial term in the stage-2 generator loss."})
    colourfulness_weight: float = dataclasses.field(default=0.0, metadata={"help": "Weight of the colourfulness term (output duller than the photo, in CF/100), both stages."})
    perceptual_weight: float = dataclasses.field(default=0.0, metadata={"help": "Weight of the EfficientNet-Lite0 perceptual loss on RGB, both stages."})
    class_weight: float = dataclasses.field(default=0.0, metadata={"help": "Weight of Zhang et al.'s class-rebalanced cross-entropy over ab classes, both stages; needs --generator_options=head=classes."})
    class_rebalance: float = dataclasses.field(default=0.5, metadata={"help": "Rebalancing of the class loss, lambda of Zhang et al.: 0 weights each colour class by 1/prior, 1 not at all."})
    l1_rebalance: float = dataclasses.field(default=1.0, metadata={"help": "Rebalancing of the L1 term, lambda as in --class_rebalance: 1 plain L1; below 1 each pixel weighs the rebalancing weight of its true colour's class, so rare vivid colours count more than the common dull ones."})
    class_prior_photos: int = dataclasses.field(default=2000, metadata={"help": "Training photos whose pixels give the colour prior of the rebalancing."})
    gp_weight: float = dataclasses.field(default=10.0, metadata={"help": "WGAN-GP gradient-penalty weight."})
    critic_steps: int = dataclasses.field(default=1, metadata={"help": "Critic updates per generator update (5 is usual for WGAN-GP)."})
    # colour hints (a generator built with hints=true; colorgan/hints.py)
    hint_none_share: float = dataclasses.field(default=0.5, metadata={"help": "Generators with hints=true: the share of training photos that get no hint (automatic colouring); the rest get a geometric number of points."})
    hint_points_mean: float = dataclasses.field(default=8.0, metadata={"help": "Generators with hints=true: the mean number of hint points on a photo that gets any (geometric, p = 1/this, as Zhang et al. 2017)."})
    train_hints_only: bool = dataclasses.field(default=False, metadata={"help": "Generators with hints=true: train only the hint branch (its hint_* layers), every other weight frozen as --init_from gave it, so that without hints the model computes exactly what it started from."})
    hint_max_patch: int = dataclasses.field(default=9, metadata={"help": "Generators with hints=true: each simulated hint carries the true colour averaged over a square of odd side 1 to this, in pixels at --image_size."})
    # optimisation
    pretrain_steps: int = dataclasses.field(default=0, metadata={"help": "Stage 1: generator-only L1 steps."})
    train_steps: int = dataclasses.field(default=1000, metadata={"help": "Stage 2: adversarial steps (generator updates)."})
    lr_generator: float = dataclasses.field(default=2e-4, metadata={"help": "Adam learning rate of the generator."})
    lr_critic: float = dataclasses.field(default=2e-4, metadata={"help": "Adam learning rate of the critic."})
    lr_encoder: float = dataclasses.field(default=0.0, metadata={"help": "Adam learning rate of a pretrained encoder while it trains; 0: --lr_generator."})
    beta1: float = dataclasses.field(default=0.5, metadata={"help": "Adam beta1."})
    beta2: float = dataclasses.field(default=0.999, metadata={"help": "Adam beta2."})
    lr_decay: str = dataclasses.field(default="none", metadata={"help": "none | linear | cosine decay to zero over each optimiser's steps."})
    clip_norm: float = dataclasses.field(default=0.0, metadata={"help": "Global gradient-norm clipping; 0: off."})
    ema: float = dataclasses.field(default=0.0, metadata={"help": "EMA momentum of every generator weight, batch-norm statistics included (e.g. 0.999); 0: off. The export uses the averages."})
    # execution
    strategy: str = dataclasses.field(default="default", metadata={"help": "default | mirrored | multi_worker | tpu."})
    sync_batch_norm: bool = dataclasses.field(default=True, metadata={"help": "With several replicas, batch norm uses the statistics of the global batch (as one device would)."})
    jit_compile: bool = dataclasses.field(default=False, metadata={"help": "Compile the train step with XLA."})
    mixed_precision: str = dataclasses.field(default="auto", metadata={"help": "auto (GPUs: bfloat16 at compute capability 8+, float16 on 7.x; CPUs with AMX or AVX512-BF16: the fastest of float32, bfloat16 and bfloat16 with float32 depthwise convolutions, timed once per machine and set-up; else float32) | float32 | float16 (with loss scaling) | bfloat16 | bfloat16+depthwise_float32."})
    # outputs
    logdir: str = dataclasses.field(default="runs/default", metadata={"help": "Run directory: TensorBoard logs, checkpoints, samples, exports."})
    log_every: int = dataclasses.field(default=50, metadata={"help": "Steps between scalar summaries."})
    eval_every: int = dataclasses.field(default=500, metadata={"help": "Steps between validation scores and image grids."})
    checkpoint_every: int = dataclasses.field(default=500, metadata={"help": "Steps between checkpoints."})
    keep_checkpoints: int = dataclasses.field(default=3, metadata={"help": "Checkpoints kept on disk."})
    export: bool = dataclasses.field(default=True, metadata={"help": "At the end, save generator.keras and a SavedModel under LOGDIR/export."})
    # a run in stages, kept in the repository (stages.py)
    stages: str = dataclasses.field(default="", metadata={"help": "A run in stages, KIND:SIZE:PHOTOS,... with KIND l1 or gan (e.g. l1:64:100000,gan:128:700000); each stage trains in its own folder under --logdir from where the last ended. Replaces --image_size, --pretrain_steps and --train_steps."})
    state_dir: str = dataclasses.field(default="", metadata={"help": "With --stages: a folder (e.g. models/run) that keeps the run's state for any clone to continue: the averaged generator and the critic in float16, and state.json."})
    state_every_hours: float = dataclasses.field(default=2.0, metadata={"help": "With --state_dir: hours of training between writes of the run's state (it is also written at each stage's end and when the run stops)."})
    curve_every: int = dataclasses.field(default=150000, metadata={"help": "With --stages: photos between the averaged generators saved under LOGDIR/curve/ for the learning curve; 0: none."})
    progress: bool = dataclasses.field(default=True, metadata={"help": "Show a progress bar."})

    @property
    def total_steps(self):
        return self.pretrain_steps + self.train_steps


STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "", "float32", "float16", "bfloat16", "bfloat16+depthwise_float32")
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
                 "keep_checkpoints", "critic_steps", "class_prior_photos"):
        if getattr(cfg, name) < 1:
            raise ColorganError(f"--{name} must be positive, got {getattr(cfg, name)}")
    for name in ("pretrain_steps", "train_steps", "l1_weight", "pretrain_l1_weight", "gan_weight", "min_colourfulness",
                 "colourfulness_weight", "perceptual_weight", "class_weight", "gp_weight", "clip_norm", "lr_encoder"):
        if getattr(cfg, name) < 0:
            raise ColorganError(f"--{name} must not be negative, got {getattr(cfg, name)}")
    if cfg.state_every_hours <= 0 or cfg.curve_every < 0:
        raise ColorganError(f"--state_every_hours must be positive and --curve_every not negative, got "
                            f"{cfg.state_every_hours} and {cfg.curve_every}")
    if cfg.stages:
        from colorgan.training.stages import parse_stages
        parse_stages(cfg.stages)
    elif cfg.state_dir:
        raise ColorganError("--state_dir keeps the state of a run in stages: give --stages too (or drop --state_dir)")
    if cfg.total_steps < 1:
        raise ColorganError("nothing to train: set --pretrain_steps or --train_steps above 0")
    if cfg.objective not in losses.OBJECTIVES:
        raise ColorganError(f"unknown --objective {cfg.objective!r}: use one of {', '.join(losses.OBJECTIVES)}")
    for name, allowed in (("strategy", STRATEGIES), ("mixed_precision", PRECISIONS), ("lr_decay", LR_DECAYS)):
        if getattr(cfg, name) not in allowed:
            raise ColorganError(f"unknown --{name} {getattr(cfg, name)!r}: use one of {', '.join(map(repr, allowed))}")
    if not 0.0 <= cfg.hint_none_share <= 1.0 or not cfg.hint_points_mean >= 1.0 or cfg.hint_max_patch < 1:
        raise ColorganError(f"the simulated hints need --hint_none_share in [0, 1], --hint_points_mean of 1 or more "
                            f"and --hint_max_patch of 1 or more, got {cfg.hint_none_share}, {cfg.hint_points_mean} "
                            f"and {cfg.hint_max_patch}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ColorganError(f"--ema must be in [0, 1), got {cfg.ema}")
    for name in ("class_rebalance", "l1_rebalance"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ColorganError(f"--{name} must be in [0, 1], got {getattr(cfg, name)}")
    if not 0.0 < cfg.val_share < 1.0:
        raise ColorganError(f"--val_share must be between 0 and 1, got {cfg.val_share}")
    for name in ("init_from", "init_critic_from"):
        path = getattr(cfg, name)
        if path and not (path.endswith(".keras") and os.path.isfile(path)):
            raise ColorganError(f"--{name}={path}: no such .keras file; pass a model saved by colorgan "
                                "(a run's generator.keras or critic.keras)")
    outputs.check("--logdir", cfg.logdir, folder=True)  # a file in the way, or /proc: now, not after the build
    check_checkpoint_list(cfg.logdir)
    check_memory(cfg)
    sources.parse_sources(cfg.data)
    sources.parse_source_weights(cfg.source_weights)
    if cfg.val_data:
        sources.parse_sources(cfg.val_data)
    head = parse_options(cfg.generator_options).get("head", "tanh")
    if cfg.class_weight and head != "classes":
        raise ColorganError(f"--class_weight={cfg.class_weight} needs a generator with the class head: add "
                            "head=classes to --generator_options (or set --class_weight=0)")
    # The projected critic's batch norms are frozen (inference statistics): they couple no examples.
    critic_norm = parse_options(cfg.critic_options).get("norm", "batch")
    if cfg.objective == "wgan-gp" and cfg.critic == "patchgan" and critic_norm == "batch":
        raise ColorganError("WGAN-GP with a batch-norm critic: batch norm couples the examples that the "
                            "gradient penalty treats one by one; add --critic_options=norm=instance (or layer, none)")


def check_checkpoint_list(logdir):
    """The run's list of checkpoints (a text file) must be text, or TF's CheckpointManager fails on it with
    a traceback; a list that is wrong in other ways is passed over (Trainer.restore reads the files)."""
    state = os.path.join(logdir, "checkpoints", "checkpoint")
    try:
        with open(state, encoding="utf-8") as f:
            f.read()
    except UnicodeDecodeError:
        raise ColorganError(f"the checkpoint list {state} is damaged (not text); delete that one file and rerun: "
                            "the checkpoints beside it are found from their own files") from None
    except OSError:
        pass  # none yet (or a folder in its place, which TF reports)


def check_memory(cfg):
    """Refuse a batch or photo size that cannot fit in this machine's memory, with the figure, before
    anything is built (it would swap for minutes, or sit building the model, and then be killed)."""
    pixels = cfg.image_size ** 2
    one = memory.TRAIN_BYTES_PER_PIXEL * pixels
    largest = int((memory.total() / memory.TRAIN_BYTES_PER_PIXEL) ** 0.5)
    memory.refuse_over(one, f"--image_size={cfg.image_size}: training on one photo",
                       f"use an --image_size of at most {largest}")
    memory.refuse_over(one * cfg.batch_size, f"--batch_size={cfg.batch_size} at --image_size={cfg.image_size}",
                       f"use a --batch_size of at most {memory.most(one)} (about 1 kB a pixel)")
    scored = memory.EVALUATE_BYTES_PER_PIXEL * pixels  # the validation batch is coloured and scored at once
    memory.refuse_over(scored * cfg.val_images, f"--val_images={cfg.val_images} at --image_size={cfg.image_size}",
                       f"use --val_images of at most {memory.most(scored)}")


def write_flagfile(cfg, path):
    """The full resolved configuration as an absl flagfile, so the run can be repeated exactly."""
    lines = [f"--{f.name}={getattr(cfg, f.name)}" if not isinstance(getattr(cfg, f.name), bool)
             else (f"--{f.name}" if getattr(cfg, f.name) else f"--no{f.name}")
             for f in dataclasses.fields(cfg)]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
