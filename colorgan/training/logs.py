"""What a run reports as it goes: speed, losses and learning rates to TensorBoard (and the terminal under
a scheduler), and the photos its stream skipped, epoch by epoch. All of it reads the device's results
only when the loop asks, at log, validation and save steps."""
import time

import tensorflow as tf
from absl import logging


def current_lr(opt):
    # Keras evaluates the schedule at the optimiser's iteration count; convert_to_tensor also reads
    # a mirrored variable in cross-replica context.
    return float(tf.convert_to_tensor(getattr(opt, "inner_optimizer", opt).learning_rate))


class Clock:
    """Training speed in images per second: over the last log interval, and since the run (re)started."""

    def __init__(self, batch_size, start_step):
        self.batch_size, self.start_step = batch_size, start_step
        self.started = self.last = time.perf_counter()
        self.last_step = start_step

    def images_per_second(self, step):
        now = time.perf_counter()
        speed = self.batch_size * (step - self.last_step) / max(now - self.last, 1e-9)
        self.last, self.last_step = now, step
        return speed

    def since_start(self, step):
        return self.batch_size * (step - self.start_step) / max(time.perf_counter() - self.started, 1e-9)


def newest_stats(strategy, stats):
    """The stats of the newest example this host has read (the largest stream index), as ints.

    Every count of one example belongs together: a batch can straddle an epoch's end, and the largest
    ``unreadable_in_epoch`` of such a batch belongs to the old epoch, not to the newest example.
    """
    best = None
    for replica in zip(*(strategy.experimental_local_results(stats[k]) for k in sorted(stats))):
        values = dict(zip(sorted(stats), (x.numpy() for x in replica)))
        i = int(values["index"].argmax())
        if best is None or values["index"][i] > best["index"]:
            best = {k: v[i].tolist() for k, v in values.items()}  # ints; lists for the per-source counts
    return best


def log_epoch_skips(skips, newest, step, result, source_names=()):
    finished = skips.update(newest["index"], newest)
    if finished is not None:
        first, last, unreadable, gray = finished
        epochs = last - first + 1
        tf.summary.scalar("data/unreadable_per_epoch", unreadable / epochs, step=step)
        tf.summary.scalar("data/gray_per_epoch", gray / epochs, step=step)
        # Every epoch goes to TensorBoard; the terminal hears only when something was skipped.
        if (unreadable or gray) and epochs == 1:
            logging.info("epoch %d: skipped %d unreadable and %d grayscale of %d photos",
                         first, unreadable, gray, skips.files_per_epoch)
        elif unreadable or gray:
            logging.info("epochs %d to %d: skipped %d unreadable and %d grayscale of %d photos (%d per epoch)",
                         first, last, unreadable, gray, epochs * skips.files_per_epoch, skips.files_per_epoch)
    result["unreadable"], result["gray"] = skips.totals
    if len(source_names) > 1:
        by_source = zip(source_names, newest["unreadable_by_source"], newest["gray_by_source"])
        result["skipped_by_source"] = {name: {"unreadable": u, "gray": g} for name, u, g in by_source}
        if finished is not None and (finished[2] or finished[3]):
            logging.info("skipped so far, by source: %s", ", ".join(
                f"{name} {c['unreadable']} unreadable and {c['gray']} grayscale"
                for name, c in result["skipped_by_source"].items()))


def log_scalars(t, logs, stage, step, images_per_second, to_terminal):
    scalars = dict(logs, **{"speed/images_per_second": images_per_second, "lr/generator": current_lr(t.g_opt),
                            "lr/critic": current_lr(t.d_opt), "stage": stage})
    for k, v in scalars.items():
        tf.summary.scalar(k, v, step=step)
    if to_terminal and t.chief:  # logs under a scheduler, where no bar is drawn
        logging.info("step %d/%d stage %d %s %.1f img/s", step, t.cfg.total_steps, stage,
                     " ".join(f"{k}={v:.4g}" for k, v in logs.items()), images_per_second)
