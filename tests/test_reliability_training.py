"""Training under faults: SIGKILL at random moments, a disk that fills up during a save."""
import glob
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from colorgan import saving, training
from colorgan.errors import ColorganError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sigkill_at_random_moments_never_breaks_the_latest_checkpoint(tmp_path):
    """Kill -9 a run that checkpoints every step (a third of its time is spent saving), three times.

    After each kill the latest checkpoint must load into the generator, and the next run must resume
    from it and keep counting steps.
    """
    logdir = tmp_path / "run"
    # 3.4 M parameters: each save writes ~40 MB, so kills often land in the middle of one.
    cmd = [sys.executable, "train.py", "--data=samples", "--image_size=64", "--batch_size=2",
           "--generator_options=base_filters=32,depth=6", "--critic_options=base_filters=8",
           "--pretrain_steps=100000", "--train_steps=0", "--checkpoint_every=1", "--keep_checkpoints=2",
           "--cache", f"--logdir={logdir}", "--noprogress", "--noexport"]
    rng = random.Random(1234)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    steps_seen = []
    for attempt in range(3):
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 180
            # wait until this process has written a checkpoint of its own, then kill at a random moment
            while time.time() < deadline and proc.poll() is None:
                latest = tf.train.latest_checkpoint(str(logdir / "checkpoints"))
                if latest and (attempt == 0 or int(latest.rsplit("-", 1)[1]) > steps_seen[-1]):
                    break
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        generator, size = saving.load_generator(str(logdir))  # raises if the checkpoint is unloadable
        assert size == 64
        steps_seen.append(int(tf.train.latest_checkpoint(str(logdir / "checkpoints")).rsplit("-", 1)[1]))
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]
    assert not glob.glob(str(logdir / "checkpoints" / "*_temp" / "*.index"))


def test_a_full_disk_during_a_save_is_a_clear_error_and_the_previous_checkpoint_survives(tmp_path):
    cfg = training.TrainConfig(
        data="samples", image_size=64, batch_size=2, generator_options="base_filters=8,depth=6",
        critic_options="base_filters=8", pretrain_steps=4, train_steps=0, checkpoint_every=2,
        eval_every=100, log_every=100, cache=True, logdir=str(tmp_path), progress=False, export=False)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def fill_disk_after_first_save(step, logs):
        if step == 2:  # files may no longer grow past 64 kB: the next checkpoint cannot be written
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))
    try:
        with pytest.raises(ColorganError, match=r"could not write a checkpoint.*ckpt-2\) is intact"):
            training.train(cfg, on_step=fill_disk_after_first_save)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
    checkpoints = tmp_path / "checkpoints"
    assert os.path.basename(tf.train.latest_checkpoint(str(checkpoints))) == "ckpt-2"
    assert not glob.glob(str(checkpoints / "*_temp"))  # no half-written checkpoint left behind
    saving.load_generator(str(tmp_path))
    # With space again, the same command resumes from step 2 and finishes.
    assert training.train(cfg)["step"] == 4


def tiny_run(data, logdir, *flags, timeout=300):
    cmd = [sys.executable, "train.py", f"--data={data}", "--val_data=samples", "--image_size=32", "--batch_size=2",
           "--generator_options=base_filters=8,depth=5", "--critic_options=base_filters=8", "--noprogress",
           "--mixed_precision=float32", f"--logdir={logdir}", *flags]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.parametrize("content", ["unreadable", "gray"])
def test_a_folder_without_one_usable_photo_stops_at_once_with_the_fix(tmp_path, content):
    from PIL import Image
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        if content == "unreadable":
            (folder / f"{i}.jpg").write_bytes(b"not an image")
        else:
            Image.new("L", (40, 40), 30 * i).convert("RGB").save(folder / f"{i}.png")
    started = time.monotonic()
    result = tiny_run(f"folder:{folder}", tmp_path / "run", "--pretrain_steps=2", "--train_steps=0", timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 120
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no usable training photo in folder:") and "Traceback" not in result.stderr
    assert ("--noskip_gray" in last) == (content == "gray")


def test_skip_counts_are_exact_in_every_epoch(tmp_path, sample_photos):
    """Bad files among 5 good ones, batches of 2 that straddle epoch ends: the same count every epoch."""
    from PIL import Image
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(sample_photos[:5]):
        Image.open(path).convert("RGB").resize((40, 40)).save(folder / f"good{i}.png")
    for i in range(6):
        (folder / f"bad{i}.jpg").write_bytes(b"\xff\xd8 broken")
    result = tiny_run(f"folder:{folder}", tmp_path / "run", "--pretrain_steps=13", "--train_steps=0", "--log_every=1",
                      "--noexport", "--verbosity=1")
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [line.split("] ", 1)[-1] for line in result.stderr.splitlines() if "skipped" in line]
    from colorgan import sources
    train_files = sources.source_files(f"folder:{folder}", "train")  # a fixed share goes to validation
    bad = sum(os.path.basename(f).startswith("bad") for f in train_files)
    assert len(reports) >= 4, result.stderr[-3000:]
    expected = f"skipped {bad} unreadable and 0 grayscale of {len(train_files)} photos"
    assert all(r.endswith(expected) for r in reports), reports


def test_a_diverged_run_exports_nothing_and_says_so(tmp_path):
    logdir = tmp_path / "run"
    result = tiny_run("samples", logdir, "--pretrain_steps=4", "--train_steps=0", "--lr_generator=1e6",
                      "--clip_norm=0")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "training diverged" in last or "not finite" in last, last
    assert not (logdir / "generator.keras").exists() and not (logdir / "export").exists()
