"""colorgan train: train (or resume) a colorizer.

    colorgan train --config=quickstart                        # a recipe that ships with colorgan
    colorgan train --flagfile=my.cfg --image_size=256         # a flagfile of your own, a flag overridden
    python train.py --flagfile=configs/shared_photos.cfg      # the same, from a source checkout

Every field of colorgan.training.TrainConfig is a flag of the same name. The run directory (--logdir)
gets TensorBoard logs, checkpoints, flags.cfg (to repeat the run), samples.png, generator.keras and a
SavedModel. Rerunning the same command resumes from the latest checkpoint.
"""
import dataclasses
import os
import pathlib

from absl import flags

from colorgan.errors import ColorganError

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"
LOGS_INFO = True  # the run's own lines (start, resume, skipped photos, stop) are its progress report
DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}


def bundled_configs():
    return sorted(p.stem for p in CONFIGS.glob("*.cfg"))


def define_flags(fv):
    from colorgan.training.config import TrainConfig
    for field in dataclasses.fields(TrainConfig):
        kind = field.type if isinstance(field.type, type) else eval(field.type)
        DEFINE[kind](field.name, field.default, field.metadata["help"], flag_values=fv)
    flags.DEFINE_string("config", None, f"A recipe that ships with colorgan, read as a flagfile before the "
                        f"other flags: {', '.join(bundled_configs())}.", flag_values=fv)


def expand_argv(argv):
    """--config=NAME becomes --flagfile=<the bundled NAME.cfg>, in place, so later flags still win."""
    expanded = []
    for arg in argv:
        if arg.startswith("--config="):
            name = arg.split("=", 1)[1]
            path = CONFIGS / f"{name.removesuffix('.cfg')}.cfg"
            if not path.is_file():
                raise ColorganError(f"--config={name}: no such recipe; use one of {', '.join(bundled_configs())} "
                                    "or --flagfile=PATH")
            arg = f"--flagfile={path}"
        expanded.append(arg)
    return expanded


def config_from(fv):
    from colorgan.training.config import TrainConfig
    return TrainConfig(**{f.name: fv[f.name].value for f in dataclasses.fields(TrainConfig)})


def run(fv, args):
    if args:
        raise ColorganError(f"unexpected arguments {args}: every setting is a --flag")
    from colorgan import export
    from colorgan.training import train, train_stages

    cfg = config_from(fv)
    result = train_stages(cfg) if cfg.stages else train(cfg)
    if result["stopped_by"]:
        print(f"stopped by {result['stopped_by']} at step {result['step']}; checkpoint: {result['checkpoint']}")
        return 0
    if cfg.export and result.get("generator"):
        result["saved_model"] = export.export_saved_model(
            result["trainer"].generator, result["trainer"].cfg.image_size, os.path.join(cfg.logdir, "export"), name="colorgan",
            source=result["checkpoint"])
    print(f"\nfinished {result['step']} steps in {cfg.logdir}")
    notes = {"samples": "  rows: gray input / predicted / real"}
    for what, key in (("TensorBoard logs", "logdir"), ("checkpoint", "checkpoint"), ("sample grid", "samples"),
                      ("Keras generator", "generator"), ("critic", "critic"), ("SavedModel", "saved_model")):
        if result.get(key):
            print(f"  {what:17s} {result[key]}{notes.get(key, '')}")
    print(f"  {'run flags':17s} {cfg.logdir}/flags.cfg")
    print(f"  view with:        tensorboard --logdir {cfg.logdir}")
    return 0
