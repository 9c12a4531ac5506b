"""A long run in stages that outlives any one machine.

``--stages=l1:64:100000,gan:64:600000,gan:128:700000`` spells a run out as stages of KIND (l1: the
generator alone on L1; gan: the adversarial step) at an image SIZE for a number of PHOTOS. Each stage is
an ordinary run (loop.train) in its own folder under --logdir, started from the weights the previous
stage ended with, so checkpoints, resume and validation work as in any run.

With ``--state_dir`` (for example ``models/run``, inside the repository) the run also keeps a small copy
of itself that any clone can continue from: the averaged generator and the critic as float16 ``.keras``
files, and ``state.json`` with the stage, its step, the stream position and the photos and hours so far.
It is written every --state_every_hours of training, at the end of each stage and whenever the run stops.
A run starts from whichever is newer, that state or this machine's own checkpoints. From the state, the
generator's raw weights start from their average and the optimisers restart: the repository keeps one
generator, not two (see RUN_STATE_FILES).
"""
import dataclasses
import json
import math
import os
import platform
import shutil
import time

import tensorflow as tf
from absl import logging

from colorgan import saving
from colorgan.errors import ColorganError

STAGE_KINDS = ("l1", "gan")
STATE_FILE = "state.json"
# What the repository holds of a run: one generator (its weight averages) and the critic, as float16.
# The raw generator would double the size of every write (24 MB more for the Lite0 U-Net with context),
# and the repository is to grow by at most 250 MB over the whole run.
RUN_STATE_FILES = ("generator.keras", "critic.keras", STATE_FILE)
# What a state must match to continue a run: the models and their options.
ARCHITECTURE = ("generator", "generator_options", "critic", "critic_options")


@dataclasses.dataclass(frozen=True)
class Stage:
    kind: str
    size: int
    photos: int

    def steps(self, batch_size):
        return math.ceil(self.photos / batch_size)

    def folder(self, index):
        return f"stage{index + 1}-{self.kind}-{self.size}px"


def parse_stages(text):
    """'l1:64:100000,gan:128:700000' -> [Stage], each KIND:SIZE:PHOTOS."""
    stages = []
    for item in filter(None, (t.strip() for t in str(text).split(","))):
        parts = item.split(":")
        try:
            kind, size, photos = parts[0], int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            kind, size, photos = "", 0, 0
        if len(parts) != 3 or kind not in STAGE_KINDS or size < 1 or photos < 1:
            raise ColorganError(f"bad stage {item!r} in --stages: write KIND:SIZE:PHOTOS,... with KIND l1 or gan, "
                                "for example --stages=l1:64:100000,gan:128:700000")
        stages.append(Stage(kind, size, photos))
    if not stages:
        raise ColorganError("--stages is empty: give at least one KIND:SIZE:PHOTOS")
    return stages


def stage_config(cfg, stages, index, init_from="", init_critic_from=""):
    """The plain run config of stage ``index``: its size, its steps of its kind, its folder and seed. Every
    stage exports its generator.keras and critic.keras: the next stage starts from them."""
    stage = stages[index]
    steps = stage.steps(cfg.batch_size)
    return dataclasses.replace(
        cfg, stages="", state_dir="", image_size=stage.size, export=True,
        pretrain_steps=steps if stage.kind == "l1" else 0, train_steps=steps if stage.kind == "gan" else 0,
        logdir=os.path.join(cfg.logdir, stage.folder(index)), seed=cfg.seed + index,
        init_from=init_from or (cfg.init_from if index == 0 else ""),
        init_critic_from=init_critic_from or (cfg.init_critic_from if index == 0 else ""))


def architecture(cfg):
    from colorgan.training.config import parse_options
    return {"generator": cfg.generator, "generator_options": parse_options(cfg.generator_options),
            "critic": cfg.critic, "critic_options": parse_options(cfg.critic_options)}


# --------------------------------------------------------------------------------------------------
# Where the run stands: this machine's checkpoints, and the state in the repository


def local_position(cfg, stages):
    """(stage, step) of the newest checkpoint under --logdir, or None. A finished stage counts as the
    start of the next, which starts from its exported models."""
    for index in reversed(range(len(stages))):
        latest = tf.train.latest_checkpoint(os.path.join(cfg.logdir, stages[index].folder(index), "checkpoints"))
        if latest:
            step = int(latest.rsplit("-", 1)[1])
            if step >= stages[index].steps(cfg.batch_size):
                return index + 1, 0
            return index, step
    return None


def read_state(state_dir, cfg):
    """The state.json of ``state_dir``, checked against this run's models, or None where there is none."""
    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        position = int(state["stage"]), int(state["step"]), int(state["data_index"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ColorganError(f"run state {path} cannot be read ({type(e).__name__}: {str(e)[:80]}); restore it "
                            "from git (git checkout -- {state_dir}) or pass another --state_dir") from None
    theirs, ours = state.get("architecture"), architecture(cfg)
    if theirs != ours:
        differ = ", ".join(k for k in ARCHITECTURE if (theirs or {}).get(k) != ours[k])
        raise ColorganError(f"run state {state_dir} is of another architecture ({differ} differ: "
                            f"{ {k: (theirs or {}).get(k) for k in ARCHITECTURE} }); run with the flags it was "
                            "trained with, or pass another --state_dir")
    if state.get("stages") not in (None, cfg.stages):
        raise ColorganError(f"run state {state_dir} follows --stages={state['stages']}, not {cfg.stages}: a run "
                            "keeps its recipe; pass the same --stages or another --state_dir")
    for name in RUN_STATE_FILES[:2]:
        if not os.path.isfile(os.path.join(state_dir, name)):
            raise ColorganError(f"run state {state_dir} lacks {name}; restore it from git or pass another --state_dir")
    return dict(state, stage=position[0], step=position[1], data_index=position[2])


def write_state(state_dir, trainer, cfg, stage, step, data_index, photos, hours):
    """Write the run's state into ``state_dir`` as a whole: into a folder beside it, then swapped in, so
    that an interrupted write leaves the previous state intact."""
    parent = os.path.dirname(os.path.abspath(state_dir))
    os.makedirs(parent, exist_ok=True)
    fresh = os.path.join(parent, f".{os.path.basename(state_dir)}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    os.makedirs(fresh)
    save_averaged_generator(trainer, os.path.join(fresh, "generator.keras"), weights_dtype="float16")
    saving.save_generator(trainer.critic, os.path.join(fresh, "critic.keras"), weights_dtype="float16")
    state = {"stages": cfg.stages, "stage": stage, "step": step, "data_index": data_index, "photos": photos,
             "hours": round(hours, 4), "architecture": architecture(cfg), "batch_size": cfg.batch_size,
             "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": cpu_model()}
    with open(os.path.join(fresh, STATE_FILE), "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")
    old = os.path.join(parent, f".{os.path.basename(state_dir)}.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(state_dir):
        os.replace(state_dir, old)
    os.replace(fresh, state_dir)
    shutil.rmtree(old, ignore_errors=True)
    logging.info("run state written to %s: stage %d step %d, %d photos, %.2f hours", state_dir, stage + 1, step,
                 photos, hours)


def save_averaged_generator(trainer, path, weights_dtype="float32"):
    """Save the generator's weight averages (its raw weights without --ema), leaving the model as it was."""
    generator = trainer.generator
    if trainer.average is None:
        return saving.save_generator(generator, path, weights_dtype)
    raw = [w.numpy() for w in generator.weights]
    trainer.average.copy_to_model()
    try:
        return saving.save_generator(generator, path, weights_dtype)
    finally:
        for w, value in zip(generator.weights, raw):
            w.assign(value)


def save_curve_point(trainer, logdir, photos):
    """The averaged generator when the run has seen ``photos`` photos, for a row of the learning curve."""
    path = save_averaged_generator(trainer, os.path.join(logdir, "curve", f"photos-{photos:07d}.keras"))
    logging.info("learning-curve point: %s", path)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    except OSError:
        return platform.machine()


# --------------------------------------------------------------------------------------------------
# The run


def photos_before(stages, index, batch_size):
    return sum(s.steps(batch_size) * batch_size for s in stages[:index])


def starting_point(cfg, stages):
    """Where the run goes on from: ('state', state) when the repository's state is newer than this machine's
    checkpoints, ('local', position) when they are (a tie goes to them: they hold the optimisers too), and
    ('fresh', position) for a run that has not started. Positions are dicts with ``stage`` and ``step``; the
    local ones carry the repository's state too (``state``, or None), for its hours."""
    local = local_position(cfg, stages)
    state = read_state(cfg.state_dir, cfg) if cfg.state_dir else None
    if state is not None and (local is None or (state["stage"], state["step"]) > local):
        return "state", state
    if local is not None:
        return "local", {"stage": local[0], "step": local[1], "state": state}
    return "fresh", {"stage": 0, "step": 0, "state": state}


def train_stages(cfg, on_step=None):
    """Run (or continue) every stage of --stages; returns the last stage's result from loop.train, with
    ``stage`` (1-based) added."""
    from colorgan.training.config import validate
    from colorgan.training.loop import train

    validate(cfg)
    stages = parse_stages(cfg.stages)
    where, position = starting_point(cfg, stages)
    index, step, from_state = position["stage"], position["step"], where == "state"
    state = position if from_state else position["state"]
    hours_before = float(state["hours"]) if state else 0.0
    if from_state:
        logging.info("continuing from the run state in %s (written %s on %s)", cfg.state_dir, state.get("written"),
                     state.get("machine"))
    elif where == "local":
        logging.info("continuing from this machine's checkpoints under %s", cfg.logdir)
    if index >= len(stages):
        raise ColorganError(f"the run in {cfg.state_dir if from_state else cfg.logdir} has finished all "
                            f"{len(stages)} stages; to train further, add a stage to --stages")

    started = time.perf_counter()
    result = None
    while index < len(stages):
        stage = stages[index]
        if from_state:
            init = os.path.join(cfg.state_dir, "generator.keras"), os.path.join(cfg.state_dir, "critic.keras")
            start = (step, state["data_index"])
        elif index > 0 and step == 0:  # the stage starts from the models the previous stage exported
            previous = os.path.join(cfg.logdir, stages[index - 1].folder(index - 1))
            init, start = (os.path.join(previous, "generator.keras"), os.path.join(previous, "critic.keras")), None
            if not os.path.isfile(init[1]):  # an L1 stage's critic has not trained: none was exported
                init = init[0], ""
        else:
            init, start = ("", ""), None
        stage_cfg = stage_config(cfg, stages, index, *init)
        clock = {"hours_written": time.perf_counter(),
                 "photos": photos_before(stages, index, cfg.batch_size) + step * cfg.batch_size}

        def after_save(trainer, at_step, stopping, index=index):
            photos = photos_before(stages, index, cfg.batch_size) + at_step * cfg.batch_size
            if cfg.curve_every and photos // cfg.curve_every > clock["photos"] // cfg.curve_every:
                save_curve_point(trainer, cfg.logdir, photos // cfg.curve_every * cfg.curve_every)
            clock["photos"] = photos
            due = time.perf_counter() - clock["hours_written"] >= cfg.state_every_hours * 3600
            done = at_step >= stages[index].steps(cfg.batch_size)
            if cfg.state_dir and (due or stopping) and not done:
                write_state(cfg.state_dir, trainer, cfg, index, at_step, int(trainer.data_index.numpy()), photos,
                            hours_before + (time.perf_counter() - started) / 3600)
                clock["hours_written"] = time.perf_counter()

        logging.info("stage %d of %d: %s at %d px, %d photos (%d steps of %d)", index + 1, len(stages),
                     "L1" if stage.kind == "l1" else "GAN", stage.size, stage.photos,
                     stage.steps(cfg.batch_size), cfg.batch_size)
        result = train(stage_cfg, on_step=on_step, start=start, after_save=after_save)
        result["stage"] = index + 1
        if result["stopped_by"]:
            return result
        index, step, from_state = index + 1, 0, False
        if cfg.state_dir:  # the next stage's start, or the finished run
            write_state(cfg.state_dir, result["trainer"], cfg, index, 0, 0,
                        photos_before(stages, index, cfg.batch_size),
                        hours_before + (time.perf_counter() - started) / 3600)
    return result
