"""Training a colorizer, in six parts:

    config.py   what a run is (TrainConfig, one field per train flag) and its checks
    gan.py      what one step computes: the generator, critic, objective and the two updates
    loop.py     the schedule around it: data, models, checkpoints, validation and outputs
    logs.py     what it reports as it goes: speed, losses, skipped photos
    runtime.py  where it runs: distribution strategy, workers, stop signals, random state
    stages.py   a long run in stages, whose state any clone of the repository can continue
"""
from colorgan.training.config import TrainConfig, parse_options, validate, write_flagfile
from colorgan.training.loop import Trainer, train
from colorgan.training.stages import train_stages
