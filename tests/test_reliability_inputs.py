"""Hostile input through every entry point: the pipeline, train.py, evaluate.py, colorize.

One folder holds every case of the reliability issue: zero-byte and truncated JPEGs, a text file named
.jpg, an HTML error page saved as .png, a 1x1 image, an animated GIF, 16-bit, CMYK, RGBA and palette
files, an EXIF-rotated photo, names with spaces and non-ASCII characters, a dangling link (unreadable),
a symlink loop and an empty sub-folder. Bad files are skipped, counted and named; good ones come out.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from colorgan import inference, models, saving
from colorgan.errors import ColorganError
from conftest import encode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = ("zero.jpg", "truncated.jpg", "text.jpg", "error page.png", "dangling.jpg")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, sample_photos):
    root = tmp_path_factory.mktemp("hostile")
    photo = Image.open(sample_photos[0]).convert("RGB").resize((80, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (root / "nested" / "empty").mkdir(parents=True)
    files = {
        "zero.jpg": b"", "truncated.jpg": encode(photo, "JPEG")[:400], "text.jpg": b"just some text\n",
        "error page.png": b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>",
        "one pixel.png": encode(Image.new("RGB", (1, 1), (200, 30, 40)), "PNG"),
        "animated.gif": encode(photo.convert("P"), "GIF", save_all=True,
                               append_images=[photo.rotate(180).convert("P")], duration=100),
        "nested/cmyk.jpg": encode(photo.convert("CMYK"), "JPEG"),
        "nested/rgba.png": encode(photo.convert("RGBA"), "PNG"),
        "nested/palette.png": encode(photo.convert("P"), "PNG"),
        "nested/photo rotated é.jpg": encode(photo, "JPEG", exif=exif.tobytes()),
        "café ünïcode.png": encode(photo, "PNG"),
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    sixteen = (np.asarray(photo, np.uint16) * 257).astype(">u2")
    Image.frombytes("I;16B", (80, 60), sixteen[..., 0].tobytes()).save(root / "nested" / "sixteen.png")
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    os.symlink(root, root / "nested" / "loop")
    return root


GOOD = {"one pixel.png": (1, 1), "animated.gif": (60, 80), "nested/cmyk.jpg": (60, 80),
        "nested/rgba.png": (60, 80), "nested/palette.png": (60, 80),
        "nested/photo rotated é.jpg": (80, 60),  # upright after EXIF orientation 6
        "café ünïcode.png": (60, 80), "nested/sixteen.png": (60, 80)}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "generator.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(path))
    return str(path)


def run(args, cwd=REPO, timeout=300):
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_colorize_folder_skips_counts_and_names_bad_files(hostile, model_file, tmp_path):
    out = tmp_path / "out"
    result = run([sys.executable, "-m", "colorgan", "colorize", f"--model={model_file}", str(hostile),
                  f"--output_dir={out}", "--noprogress"])
    assert result.returncode == 1, result.stderr[-2000:]  # some failed
    report = result.stdout + result.stderr
    assert f"done {len(GOOD)}, skipped 0, failed {len(BAD)}" in report
    for name in BAD:
        assert name in report
    assert "Traceback" not in report
    for name, (height, width) in GOOD.items():  # each in its own format, but a GIF (a palette) as PNG
        written = out / (name.replace(".gif", ".png"))
        assert written.is_file(), name
        assert Image.open(written).size == (width, height), name
    assert not list(out.rglob("*.tmp*")) and [p.name for p in out.rglob(".*")] == [".colorgan-outputs"]


@pytest.mark.parametrize("name", ["zero.jpg", "error page.png", "dangling.jpg"])
def test_a_single_bad_file_fails_with_one_line(hostile, model_file, tmp_path, name):
    result = run([sys.executable, "-m", "colorgan", "colorize", f"--model={model_file}", str(hostile / name),
                  f"--output_dir={tmp_path}", "--noprogress"])
    assert result.returncode != 0
    assert name in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_colorize_into_an_output_path_that_is_a_file_is_one_clear_error(hostile, model_file, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run([sys.executable, "-m", "colorgan", "colorize", f"--model={model_file}",
                  str(hostile / "one pixel.png"), f"--output_dir={blocker}", "--noprogress"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "not-a-folder" in result.stdout + result.stderr


def test_colorize_creates_a_missing_output_folder(hostile, model_file, tmp_path):
    out = tmp_path / "a" / "b"
    result = run([sys.executable, "-m", "colorgan", "colorize", f"--model={model_file}",
                  str(hostile / "café ünïcode.png"), f"--output_dir={out}", "--noprogress"])
    assert result.returncode == 0, result.stderr[-1500:]
    assert (out / "café ünïcode.png").is_file()


def test_evaluate_skips_and_lists_bad_files(hostile, tmp_path):
    result = run([sys.executable, "evaluate.py", "--model=gray", f"--data=folder:{hostile}", "--size=32",
                  "--nofid", f"--out_dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert all(name in text for name in BAD)
    assert str(len(GOOD)) in result.stdout


def test_train_skips_bad_files_and_logs_the_count_once_per_epoch(hostile, tmp_path):
    # 8 good photos, 1 of them 1x1 and upscaled; batch 2: 5 steps pass the end of the first epoch.
    result = run([sys.executable, "train.py", f"--data=folder:{hostile}", "--val_data=samples",
                  "--image_size=32", "--batch_size=2", "--generator_options=base_filters=8,depth=5",
                  "--critic_options=base_filters=8", "--pretrain_steps=5", "--train_steps=0", "--noprogress",
                  "--noexport", "--noskip_gray", f"--logdir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 0: skipped 5 unreadable and 0 grayscale of 13 photos" in result.stderr


def test_a_huge_photo_is_coloured_in_strips_at_full_size(monkeypatch, sample_photos):
    colorizer = inference.KerasColorizer(models.build_generator("unet", image_size=32, base_filters=8, depth=5))
    photo = np.asarray(Image.open(sample_photos[0]).convert("RGB").resize((517, 333)))
    whole = colorizer.colorize(photo)
    # Pretend the photo is huge: the strip path (bounded memory) must give the same picture.
    monkeypatch.setattr(inference, "LARGE_PHOTO_PIXELS", 1000)
    monkeypatch.setattr(inference, "STRIP_PIXELS", 20_000)
    strips = colorizer.colorize(photo)
    assert strips.shape == (333, 517, 3)
    difference = np.abs(whole.astype(int) - strips)
    assert difference.max() <= 2 and difference.mean() < 0.05


def test_exporter_refuses_a_checkpoint_of_another_architecture(tmp_path):
    import tensorflow as tf
    run_dir = tmp_path / "run"
    trained = models.build_generator("unet", image_size=32, base_filters=8, depth=5)
    tf.train.CheckpointManager(tf.train.Checkpoint(generator=trained), str(run_dir / "checkpoints"), 1).save()
    # The run says it is a wider unet than the checkpoint holds.
    saving.save_run_config(str(run_dir), "unet", {"base_filters": 16, "depth": 5}, 32)
    with pytest.raises(ColorganError, match="does not match generator 'unet'"):
        saving.load_generator(str(run_dir))
    result = run([sys.executable, "-m", "colorgan", "export", f"--model={run_dir}", f"--output={tmp_path / 'out'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "does not match" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("saved_model.pb"))
