"""The colorizer that ships with colorgan: its file, its quality on photos it never saw, and every entry
point (colorize, evaluate.py, the exporters, serve) using it when no model is given."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from colorgan import cli, evaluation, inference, saving
from conftest import REPO, read_rgb, vivid_tiny_generator

SHIPPED = pathlib.Path(REPO) / "models" / "colorgan-lite0.keras"
# Its scores on the 11 photos that ship with matplotlib, scikit-image and scikit-learn (never trained on),
# as in models/MODEL_CARD.md: python evaluate.py --data=samples --nofid
EXPECTED = {"psnr": 21.82, "ssim": 0.8799, "ab_mae": 10.54, "colourfulness": 18.93}


@pytest.fixture(scope="module")
def shipped():
    return inference.load_colorizer()


@pytest.fixture(scope="module")
def sample_set(sample_photos):
    return [(p, read_rgb(p)) for p in sample_photos]


def test_the_package_default_is_the_one_file_under_models():
    assert saving.DEFAULT_GENERATOR.resolve() == SHIPPED.resolve()
    assert SHIPPED.stat().st_size <= 25e6


def test_it_loads_as_float32_at_its_training_size(shipped):
    assert shipped.image_size == 128
    assert {w.dtype for w in shipped.model.weights} == {"float32"}
    assert shipped.model.name == "backbone_efficientnet_lite0"


def test_it_beats_the_gray_baseline_on_photos_it_never_saw(shipped, sample_set):
    result = evaluation.evaluate(shipped, sample_set, progress=False)
    model, gray = result.aggregates["model"], result.aggregates["gray"]
    assert model["psnr"] > gray["psnr"] + 0.3
    assert model["ab_mae"] < gray["ab_mae"] - 1.0
    assert model["colourfulness"] > 10  # colour, not the near-gray of an untrained or collapsed model
    for key, value in EXPECTED.items():
        assert model[key] == pytest.approx(value, abs=0.02 if key == "ssim" else 0.05), key


def test_float16_weights_halve_the_file_and_come_back_as_float32(tmp_path):
    generator = vivid_tiny_generator(32)
    full = saving.save_generator(generator, tmp_path / "full.keras")
    half = saving.save_generator(generator, tmp_path / "half.keras", weights_dtype="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    umask = os.umask(0)
    os.umask(umask)
    assert half.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the user writes
    loaded, image_size = saving.load_generator(half)
    assert image_size == 32 and {w.dtype for w in loaded.weights} == {"float32"}
    l = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    ab, ab_half = generator(l, training=False).numpy(), loaded(l, training=False).numpy()
    assert np.abs(ab).max() * 110 > 20  # the check below means something only with vivid colours
    assert np.abs(ab - ab_half).max() * 110 < 0.5


def test_save_leaves_no_half_written_file(tmp_path):
    from colorgan.errors import ColorganError
    with pytest.raises(ColorganError, match="must end in .keras"):
        saving.save_generator(vivid_tiny_generator(32), tmp_path / "model.h5")
    assert list(tmp_path.iterdir()) == []


def test_colorize_without_model_uses_it(tmp_path, sample_photos, capsys):
    photo = next(p for p in sample_photos if p.endswith("chelsea.png"))
    gray = tmp_path / "cat.png"
    Image.fromarray(read_rgb(photo)).convert("L").save(gray)
    assert cli.colorize_main(["colorize", "--noprogress", "--output_dir", str(tmp_path / "out"), str(gray)]) == 0
    out = read_rgb(tmp_path / "out" / "cat.png")
    assert out.shape == read_rgb(photo).shape
    chroma = np.hypot(*np.moveaxis(evaluation.lab_of(out[None]).numpy()[0, ..., 1:], -1, 0))
    assert chroma.mean() > 8


def test_evaluate_and_the_exporters_default_to_it(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                                       text=True, timeout=600)
    done = run("evaluate.py", "--data=samples", "--max_images=2", "--size=64", "--nofid", "--grid_images=0",
               "--extremes=0", f"--out_dir={tmp_path / 'eval'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert next(line for line in done.stdout.splitlines() if "gray" in line).split() == ["shipped", "gray"]

    done = run("-m", "colorgan", "export", f"--output={tmp_path / 'exported'}")
    assert done.returncode == 0, done.stderr[-2000:]
    saved = inference.load_colorizer(str(tmp_path / "exported" / "colorgan"))
    l = np.linspace(-1, 1, 128 * 128, dtype=np.float32).reshape(1, 128, 128, 1)
    np.testing.assert_allclose(saved.predict_ab(l), inference.load_colorizer().predict_ab(l), atol=1e-4)
