"""Damaged training state: a run resumes from its newest intact checkpoint and names the damaged ones;
a damaged checkpoint asked for by name is refused in one line; nothing is a traceback.

One tiny run (3 steps, a checkpoint every step) is copied and damaged a different way for each case.
"""
import logging
import os
import shutil

import pytest

from colorgan import cli, saving, training
from colorgan.errors import ColorganError


def config(logdir, steps=3):
    return training.TrainConfig(
        data="samples", image_size=32, batch_size=2, generator_options="base_filters=8,depth=5",
        critic_options="base_filters=8", pretrain_steps=steps, train_steps=0, checkpoint_every=1,
        keep_checkpoints=3, eval_every=100, log_every=100, val_images=2, cache=True, logdir=str(logdir),
        progress=False, export=False, mixed_precision="float32")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("run") / "run"
    assert training.train(config(logdir))["step"] == 3
    assert sorted(p.name for p in (logdir / "checkpoints").glob("*.index")) == ["ckpt-1.index", "ckpt-2.index",
                                                                                "ckpt-3.index"]
    return logdir


def data_file(logdir, step):
    return logdir / "checkpoints" / f"ckpt-{step}.data-00000-of-00001"


def cut_short(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "data file cut short": (lambda run: cut_short(data_file(run, 3)), "its data file is cut short"),
    "data file deleted": (lambda run: data_file(run, 3).unlink(), "a data file is missing"),
    "index file deleted": (lambda run: (run / "checkpoints" / "ckpt-3.index").unlink(), "its index file is missing"),
    "index file cut short": (lambda run: cut_short(run / "checkpoints" / "ckpt-3.index"),
                             "its index file is damaged"),
    "a byte flipped": (lambda run: flip_a_byte(data_file(run, 3)), "DataLossError"),
}


@pytest.fixture
def damaged_copy(finished_run, tmp_path):
    def make(how):
        run = tmp_path / "run"
        shutil.copytree(finished_run, run)
        DAMAGE[how][0](run)
        return run
    return make


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_resume_passes_over_a_damaged_checkpoint_and_names_it(how, damaged_copy, caplog):
    """Was: a traceback (IndexError, NotFoundError, DataLossError), with an intact ckpt-2 beside it."""
    run = damaged_copy(how)
    trainer = training.Trainer(config(run))
    with caplog.at_level(logging.WARNING):
        resumed = trainer.restore()
    assert os.path.basename(resumed) == "ckpt-2" and int(trainer.step.numpy()) == 2
    warning = next(r.getMessage() for r in caplog.records if "is damaged" in r.getMessage())
    assert warning.startswith(f"checkpoint {run / 'checkpoints' / 'ckpt-3'} is damaged ({DAMAGE[how][1]}")
    assert warning.endswith("); resuming from ckpt-2, the newest intact one"), warning

def test_the_resumed_run_finishes_and_replaces_the_damaged_checkpoint(damaged_copy, caplog):
    run = damaged_copy("data file cut short")
    flags = [f"--{k}={v}" for k, v in vars(config(run, steps=4)).items() if not isinstance(v, bool)]
    status = cli.main(["colorgan", "train", *flags, "--cache", "--noprogress", "--noexport"])
    assert status == 0
    err = caplog.text
    assert "ckpt-3 is damaged (its data file is cut short); resuming from ckpt-2" in err and "Traceback" not in err
    assert saving.load_generator(str(run / "checkpoints" / "ckpt-3"))  # written again, whole
    assert os.path.basename(saving.checkpoints_newest_first(str(run / "checkpoints"))[0]) == "ckpt-4"


def test_every_checkpoint_damaged_is_one_line_naming_them(damaged_copy):
    run = damaged_copy("data file deleted")
    cut_short(data_file(run, 2))
    (run / "checkpoints" / "ckpt-1.index").unlink()
    with pytest.raises(ColorganError) as caught:
        training.Trainer(config(run)).restore()
    assert str(caught.value) == (f"every checkpoint in {run / 'checkpoints'} is damaged: ckpt-3 (a data file is "
                                 "missing), ckpt-2 (its data file is cut short), ckpt-1 (its index file is missing); "
                                 "restore them from a backup, or move that folder away to start afresh")


def test_a_damaged_or_lost_checkpoint_list(damaged_copy):
    """The `checkpoint` file lists the checkpoints. Was: garbage text made a resume silently start from
    step 0 (and overwrite the checkpoints); bytes that are not text gave a UnicodeDecodeError traceback."""
    run = damaged_copy("data file deleted")
    state = run / "checkpoints" / "checkpoint"
    state.write_text("garbage {{{")
    trainer = training.Trainer(config(run))
    assert os.path.basename(trainer.restore()) == "ckpt-2"  # found from the files themselves
    state.unlink()
    assert os.path.basename(training.Trainer(config(run)).restore()) == "ckpt-2"
    state.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ColorganError, match=r"the checkpoint list .*checkpoint is damaged \(not text\); delete "
                                            "that one file and rerun"):
        training.Trainer(config(run))


def test_loading_a_run_uses_its_newest_intact_checkpoint(damaged_copy, caplog):
    """colorize, evaluate, export and serve load runs through saving.load_generator."""
    run = damaged_copy("data file cut short")
    with caplog.at_level(logging.WARNING):
        generator, size = saving.load_generator(str(run))
    assert size == 32 and any("ckpt-3 is damaged (its data file is cut short); using ckpt-2" in r.getMessage()
                              for r in caplog.records)


def test_a_damaged_checkpoint_asked_for_by_name_is_refused_in_one_line(damaged_copy, tmp_path, capsys,
                                                                       sample_photos):
    run = damaged_copy("data file cut short")
    prefix = run / "checkpoints" / "ckpt-3"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["colorgan", "colorize", f"--model={prefix}", f"--output_dir={tmp_path / 'out'}", "--noprogress",
                  sample_photos[0]])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: checkpoint {prefix} is damaged (its data file is cut short); pass its run dir to use the newest "
        "intact checkpoint, or another checkpoint"]
