"""evaluate.py and colorgan.evaluation: the protocol, the baselines, colorizers of any size, the reports and user errors."""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorgan import evaluation, inception, inference
from colorgan.errors import ColorganError
from conftest import REPO, read_rgb

FIXED_SET = ("astronaut.png", "chelsea.png", "coffee.png")  # shipped with scikit-image


@pytest.fixture(scope="module")
def fixed_set(sample_photos):
    paths = [p for p in sample_photos if os.path.basename(p) in FIXED_SET]
    assert len(paths) == 3
    return [(p, read_rgb(p)) for p in paths]


class ZeroColorizer:
    """Predicts a = b = 0 at its own size, and records what it was given."""

    def __init__(self, image_size):
        self.image_size = image_size
        self.inputs = []

    def predict_ab(self, l):
        self.inputs.append(l)
        return np.zeros(l.shape[:-1] + (2,), np.float32)


def test_protocol_is_a_straight_bicubic_resize_or_a_centre_crop(fixed_set):
    _, photo = fixed_set[0]
    photo = photo[:300, :200]  # portrait
    straight = evaluation.fit_to_protocol(photo, 64, "straight")
    np.testing.assert_array_equal(straight, np.asarray(Image.fromarray(photo).resize((64, 64), Image.BICUBIC)))
    cropped = evaluation.fit_to_protocol(photo, 64, "center_crop")
    resized = np.asarray(Image.fromarray(photo).resize((64, 96), Image.BICUBIC))
    np.testing.assert_array_equal(cropped, resized[16:80])


def test_jpeg_is_decoded_exactly_as_libjpeg_does(fixed_set):
    buffer = io.BytesIO()
    Image.fromarray(fixed_set[1][1]).save(buffer, "JPEG", quality=92)
    contents = buffer.getvalue()
    np.testing.assert_array_equal(evaluation.decode_photo(contents), np.asarray(Image.open(io.BytesIO(contents))))
    buffer = io.BytesIO()
    Image.fromarray(fixed_set[1][1]).convert("L").save(buffer, "PNG")
    gray = evaluation.decode_photo(buffer.getvalue())
    assert gray.shape == fixed_set[1][1].shape and np.all(gray[..., 0] == gray[..., 2])


def test_gray_gives_the_expected_numbers_on_a_fixed_set(fixed_set):
    result = evaluation.evaluate("gray", fixed_set, progress=False)
    # The same protocol computed independently with skimage's colour conversion and metrics.
    expected = []
    for _, photo in fixed_set:
        real = np.asarray(Image.fromarray(photo).resize((256, 256), Image.BICUBIC))
        lab = skcolor.rgb2lab(real)
        lab[..., 1:] = 0.0
        gray = np.round(skcolor.lab2rgb(lab) * 255).astype(np.uint8)
        rg = gray[..., 0].astype(float) - gray[..., 1]
        yb = 0.5 * (gray[..., 0].astype(float) + gray[..., 1]) - gray[..., 2]
        hasler = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
        expected.append([peak_signal_noise_ratio(real, gray, data_range=255),
                         structural_similarity(real, gray, channel_axis=-1, data_range=255),
                         np.abs(skcolor.rgb2lab(real)[..., 1:] - skcolor.rgb2lab(gray)[..., 1:]).mean(), hasler])
    psnr, ssim, ab_mae, colourfulness = np.mean(expected, axis=0)
    gray = result.aggregates["gray"]
    assert gray["psnr"] == pytest.approx(psnr, abs=1e-3)
    assert gray["ssim"] == pytest.approx(ssim, abs=1e-4)
    assert gray["ab_mae"] == pytest.approx(ab_mae, abs=1e-3)
    # Gray output's colour is only uint8 rounding: a few pixels one code apart.
    assert gray["colourfulness"] == pytest.approx(colourfulness, abs=5e-3)
    # And the numbers themselves, so that a change of protocol shows.
    assert gray["psnr"] == pytest.approx(17.1266, abs=1e-3)
    assert gray["ssim"] == pytest.approx(0.86545, abs=1e-4)
    assert gray["auc"] == pytest.approx(0.80806, abs=1e-4)
    assert result.real_colourfulness == pytest.approx(62.2577, abs=1e-3)
    assert gray["colourfulness"] == pytest.approx(0.0725, abs=1e-3)
    assert gray["psnr_infinite_images"] == 0 and gray["fid"] is None
    assert result.aggregates["model"] == gray


def test_identity_gives_infinite_psnr_and_no_colourfulness_gap(fixed_set):
    result = evaluation.evaluate("identity", fixed_set, size=64, progress=False)
    model = result.aggregates["model"]
    assert model["psnr"] is None and model["psnr_infinite_images"] == 3
    assert all(np.isinf(row["psnr"]) for row in result.rows)
    assert model["delta_colourfulness"] == 0.0
    assert model["ssim"] == pytest.approx(1.0) and model["auc"] == 1.0 and model["ab_mae"] == 0.0
    assert result.aggregates["gray"]["psnr"] < 30  # the baseline is still reported beside it
    assert "photos with PSNR = inf" in evaluation.report_table(result, "identity")


@pytest.mark.parametrize("model_size", [64, 32])
def test_a_colorizer_of_any_size_that_predicts_no_colour_scores_as_the_gray_baseline(fixed_set, model_size):
    colorizer = ZeroColorizer(model_size)
    result = evaluation.evaluate(colorizer, fixed_set, size=64, batch_size=2, progress=False)
    assert [l.shape for l in colorizer.inputs] == [(2, model_size, model_size, 1), (1, model_size, model_size, 1)]
    assert all(-1.0 <= l.min() and l.max() <= 1.0 for l in colorizer.inputs)
    assert result.aggregates["model"] == result.aggregates["gray"]


def test_colour_moves_the_metrics_away_from_the_gray_baseline(fixed_set):
    class WarmColorizer(ZeroColorizer):
        def predict_ab(self, l):
            return np.full(l.shape[:-1] + (2,), 0.25, np.float32)  # a = b = 27.5: orange everywhere

    result = evaluation.evaluate(WarmColorizer(64), fixed_set, size=64, progress=False)
    model, gray = result.aggregates["model"], result.aggregates["gray"]
    assert model["colourfulness"] > 10 * gray["colourfulness"]
    assert model["ab_mae"] != gray["ab_mae"] and model["psnr"] != gray["psnr"]
    row = result.rows[0]
    assert row["psnr"] != row["gray_psnr"] and row["real_colourfulness"] > 0


def test_the_real_colour_reference_is_exact_where_it_can_be_and_degrades_with_fewer_cells(fixed_set):
    """real:S at the scoring size is the photo itself (up to Lab round trips), one flat colour comes back
    from a single cell, no colour at all is the gray baseline, and fewer cells score worse."""
    size = 64
    at = lambda cells, saturation=1.0: evaluation.evaluate(evaluation.load_model(f"real:{cells}", saturation),
                                                           fixed_set, size=size, progress=False)
    full = at(size)
    assert min(row["psnr"] for row in full.rows) > 45 and full.aggregates["model"]["ab_mae"] < 0.6
    assert abs(full.aggregates["model"]["delta_colourfulness"]) < 0.5

    flat = np.empty((40, 50, 3), np.uint8)
    flat[:] = (200, 90, 40)  # one orange, in gamut
    out = evaluation.load_model("real:1").colorize_batch(flat[None])[0]
    assert np.abs(out.astype(int) - flat).max() <= 1

    assert at(8, saturation=0.0).aggregates["model"] == at(8, saturation=0.0).aggregates["gray"]
    psnr = [at(cells).aggregates["model"]["psnr"] for cells in (32, 4, 1)]
    assert 45 > psnr[0] > psnr[1] > psnr[2] > full.aggregates["gray"]["psnr"]
    assert evaluation.model_name_of("real:8") == "real8"
    with pytest.raises(ColorganError, match="real:S"):
        evaluation.load_model("real:x")


def test_a_saved_keras_generator_is_loaded_through_the_inference_module(tmp_path, fixed_set):
    from colorgan import models
    generator = models.build_generator("unet", image_size=32, base_filters=4, depth=5)
    generator.save(tmp_path / "generator.keras")
    colorizer = evaluation.load_model(str(tmp_path / "generator.keras"))
    assert colorizer.image_size == 32
    result = evaluation.evaluate(colorizer, fixed_set, size=64, progress=False)
    model = result.aggregates["model"]
    assert np.isfinite(model["psnr"]) and 0 < model["ssim"] <= 1 and 0 < model["auc"] <= 1
    assert result.first[0].output.shape == (64, 64, 3)
    # --saturation scores the same model with its colour scaled, as colorize would give it.
    livelier = evaluation.load_model(str(tmp_path / "generator.keras"), saturation=2.0)
    assert isinstance(livelier, inference.SaturatedColorizer) and livelier.saturation == 2.0
    assert evaluation.load_model(colorizer, saturation=2.0).colorizer is colorizer  # an object, not a path
    with pytest.raises(ColorganError, match="not to the gray baseline"):
        evaluation.load_model("gray", saturation=2.0)


def test_extremes_are_the_worst_and_best_photos_by_psnr(sample_photos):
    photos = [(p, read_rgb(p)) for p in sample_photos[:6]]
    result = evaluation.evaluate("gray", photos, size=32, batch_size=4, extremes=2, grid_images=3, progress=False)
    psnrs = sorted(row["psnr"] for row in result.rows)
    assert [e.psnr for e in result.worst] == psnrs[:2]
    assert [e.psnr for e in result.best] == psnrs[::-1][:2]
    assert [e.name for e in result.first] == [p for p, _ in photos[:3]]
    assert result.first[0].output.shape == (32, 32, 3)


def test_unreadable_files_are_skipped_and_listed(tmp_path, fixed_set):
    for name, (_, photo) in zip(["a.png", "b.jpg"], fixed_set):
        Image.fromarray(photo).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    unreadable = []
    total, photos = evaluation.read_photos(f"folder:{tmp_path}", "all", unreadable)
    result = evaluation.evaluate("gray", photos, size=32, total=total, unreadable=unreadable, progress=False)
    assert total == 3 and result.protocol["images"] == 2
    assert result.unreadable == [str(tmp_path / "broken.jpg")]


def test_fid_is_skipped_with_a_reason_and_everything_else_reported(monkeypatch, fixed_set):
    monkeypatch.setenv("COLORGAN_FID_WEIGHTS", "/nonexistent/default_1.pt")
    features, reason = evaluation.make_feature_extractor(True)
    assert features is None and "COLORGAN_FID_WEIGHTS" in reason
    result = evaluation.evaluate("gray", fixed_set, size=32, features=features, fid_skipped=reason, progress=False)
    assert result.fid_skipped == reason and result.aggregates["gray"]["fid"] is None
    assert result.aggregates["gray"]["psnr"] > 0
    table = evaluation.report_table(result, "gray")
    assert f"FID skipped: {reason}" in table.splitlines()
    assert not any(line.startswith("FID ") and "skipped" not in line for line in table.splitlines())
    long_name = "shared_photos_ckpt-1500_raw"
    header, psnr_line = evaluation.report_table(result, long_name).splitlines()[:2]
    assert header.split() == [long_name, "gray"] and len(psnr_line) == len(header)


def test_shared_validation_set_reproduces_the_reference_gray_numbers(shared_data):
    unreadable = []
    total, photos = evaluation.read_photos(f"folder:{shared_data}/val", "all", unreadable)
    result = evaluation.evaluate("gray", photos, total=total, batch_size=25, progress=False)
    gray = result.aggregates["gray"]
    assert result.protocol["images"] == 200 and not unreadable
    assert round(gray["psnr"], 2) == 23.45
    assert round(gray["ssim"], 4) == 0.9413
    assert round(result.real_colourfulness, 2) == 37.23
    assert round(gray["colourfulness"], 2) == 0.08


def run_script(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_script_writes_every_report(tmp_path):
    try:
        inception.find_weights()
        fid = True
    except inception.WeightsNotFound:
        fid = False
    out = tmp_path / "eval"
    done = run_script("--model=identity", "--data=samples", "--max_images=3", "--size=64", "--grid_images=2",
                      "--extremes=1", "--tensorboard", f"--out_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]

    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"]["images"] == 3 and report["protocol"]["size"] == 64
    assert report["protocol"]["resize"] == "straight"
    assert report["model"]["psnr_infinite_images"] == 3 and report["gray"]["psnr"] > 0
    if fid:
        assert report["model"]["fid"] == pytest.approx(0.0, abs=1e-6) and report["gray"]["fid"] > 1.0
    else:
        assert report["fid_skipped"]
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[0]["psnr"]) == np.inf and float(rows[0]["gray_psnr"]) < 50
    for name, rows_of_images in [("grid.png", 2), ("extremes.png", 1)]:
        width, height = Image.open(out / name).size
        assert width > 600 and height >= 200 * rows_of_images
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    header = next(line for line in done.stdout.splitlines() if "identity" in line and "gray" in line)
    assert header.split() == ["identity", "gray"]


def test_user_errors_are_one_line_without_traceback(tmp_path):
    done = run_script("--model=gray", f"--data=folder:{tmp_path}/missing", "--nofid")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: image folder")
    with pytest.raises(ColorganError, match="no such file"):
        evaluation.load_model(str(tmp_path / "no-such-run"))
    with pytest.raises(ColorganError, match="too small"):
        evaluation.evaluate("gray", [], size=4, progress=False)
    with pytest.raises(ColorganError, match="no readable photos"):
        evaluation.evaluate("gray", [], progress=False)
