"""Every shipped flagfile parses with absl, names real flags and passes validation; the demo runs."""
import glob
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.cfg")))


def run_train(*args, timeout=600):
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_and_validates(path, tmp_path, monkeypatch):
    from absl import flags

    from colorgan import training
    from colorgan.cli import train as train_command
    fv = flags.FlagValues()
    train_command.define_flags(fv)
    fv(["train.py", f"--flagfile={path}"])
    cfg = train_command.config_from(fv)
    if cfg.init_from and os.path.isfile(os.path.join(REPO, cfg.init_from)):
        monkeypatch.chdir(REPO)  # a recipe that continues the shipped model, from a checkout
    elif cfg.init_from:  # one that continues another model names a file the user fetches (the recipe says how)
        monkeypatch.chdir(tmp_path)
        (tmp_path / cfg.init_from).write_bytes(b"")
        assert "git show" in open(path).read()
    training.validate(cfg)
    assert cfg.logdir.startswith("runs/")


def test_expected_recipes_ship():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"quickstart.cfg", "pix2pix_coco.cfg", "resunet_wgangp_coco.cfg", "pretrained_coco.cfg",
            "shared_photos.cfg", "vivid_photos.cfg", "hints_photos.cfg"} <= names


def test_seeds_baseline_settings():
    """The pix2pix recipe, as absl parses it (later lines win, --config resolves the bundled file)."""
    from absl import flags

    from colorgan.cli import train as train_command
    fv = flags.FlagValues()
    train_command.define_flags(fv)
    fv(train_command.expand_argv(["train", "--config=pix2pix_coco"]))
    cfg = train_command.config_from(fv)
    assert (cfg.generator, cfg.critic, cfg.objective) == ("unet", "patchgan", "vanilla")
    assert (cfg.l1_weight, cfg.lr_generator, cfg.lr_critic, cfg.beta1, cfg.beta2) == (100, 2e-4, 2e-4, 0.5, 0.999)
    assert (cfg.batch_size, cfg.image_size, cfg.data) == (16, 256, "tfds:coco/2017")
    assert "pix2pix_coco" in train_command.bundled_configs()


@pytest.mark.parametrize("args,message", [
    (["--flagfile=configs/pix2pix_coco.cfg", "--data_dir=/nonexistent/tfds"], "tfds.load('coco/2017'"),
    (["--flagfile=configs/quickstart.cfg", "--generator=pix2pixhd"], "unknown generator 'pix2pixhd'"),
    (["--flagfile=configs/quickstart.cfg", "--image_size=50"], "smallest 64"),
    (["--flagfile=configs/quickstart.cfg", "--batch_size=-2"], "--batch_size must be positive"),
    (["--flagfile=configs/quickstart.cfg", "--colour=yes"], "Unknown command line flag 'colour'"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = run_train(*args, f"--logdir={tmp_path}", timeout=180)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr


def test_demo_like_quickstart_run_finishes_with_every_output(tmp_path):
    logdir = tmp_path / "quickstart"
    result = run_train("--flagfile=configs/quickstart.cfg", "--pretrain_steps=3", "--train_steps=3",
                       "--eval_every=3", "--noprogress", f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    for output in ("samples.png", "generator.keras", "flags.cfg", "model.json"):
        assert (logdir / output).is_file(), output
        assert str(logdir / output) in result.stdout or output in ("flags.cfg", "model.json")
    assert glob.glob(str(logdir / "events.out.tfevents.*"))
    assert glob.glob(str(logdir / "checkpoints" / "ckpt-6.index"))
    assert glob.glob(str(logdir / "export" / "*" / "*" / "saved_model.pb")), result.stdout
    assert "tensorboard --logdir" in result.stdout
