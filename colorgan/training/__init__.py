"""Training a colorizer, in three parts:

    config.py   what a run is (TrainConfig, one field per train flag) and its checks
    gan.py      what one step computes: the generator, critic, objective and the two updates
    loop.py     the schedule around it: strategy, data, checkpoints, logs, validation and outputs
    runtime.py  where it runs: distribution strategy, workers, stop signals, random state
"""
from colorgan.training.config import TrainConfig, parse_options, validate, write_flagfile
from colorgan.training.loop import Trainer, train
