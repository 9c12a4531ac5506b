"""Train a colorizer: python train.py --flagfile=configs/quickstart.cfg [--flag=value ...]

Every field of colorgan.training.TrainConfig is a flag of the same name. The run directory (--logdir)
gets TensorBoard logs, checkpoints, flags.cfg (to repeat the run), samples.png and the exported model.
Rerunning the same command resumes from the latest checkpoint.
"""
import dataclasses

from absl import app, flags, logging

from colorgan.errors import exit_on_user_error
from colorgan.training import TrainConfig, train

DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
for field in dataclasses.fields(TrainConfig):
    DEFINE[field.type if isinstance(field.type, type) else eval(field.type)](
        field.name, field.default, field.metadata["help"])
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    logging.set_verbosity(logging.INFO)
    cfg = TrainConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)})
    result = train(cfg)
    if result["stopped_by"]:
        print(f"stopped by {result['stopped_by']} at step {result['step']}; checkpoint: {result['checkpoint']}")
        return
    print(f"\nfinished {result['step']} steps in {cfg.logdir}")
    notes = {"samples": "  rows: gray input / predicted / real"}
    for what, key in (("TensorBoard logs", "logdir"), ("checkpoint", "checkpoint"), ("sample grid", "samples"),
                      ("Keras generator", "generator"), ("SavedModel", "saved_model")):
        if result.get(key):
            print(f"  {what:17s} {result[key]}{notes.get(key, '')}")
    print(f"  {'run flags':17s} {cfg.logdir}/flags.cfg")
    print(f"  view with:        tensorboard --logdir {cfg.logdir}")


if __name__ == "__main__":
    app.run(main)
