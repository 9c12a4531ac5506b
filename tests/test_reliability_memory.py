"""Memory that stays bounded whatever a batch or size flag says: refused before the work starts with the
memory it would need (train, evaluate, export), or clamped with a note (video) or streamed (colorize,
the library's colorize_batch), where the result does not depend on it.

The machine's memory is pinned at 4 GB here (colorgan.memory.total), so that the figures are known.
"""
import time

import numpy as np
import pytest

from colorgan import inference, memory, models, video
from conftest import run_cli, tiny_film

GB4 = 4_000_000_000


@pytest.fixture
def four_gb(monkeypatch):
    monkeypatch.setattr(memory, "total", lambda: GB4)




@pytest.mark.parametrize("flags, line", [
    # Was: grew past 4 GB, then the kernel's OOM killer.
    (["--batch_size=100000"], "--batch_size=100000 at --image_size=256 would need about 6,554 GB of memory, and this "
                              "machine has 4.0 GB; use a --batch_size of at most 61 (about 1 kB a pixel)"),
    # Was: minutes without a word.
    (["--image_size=65536"], "--image_size=65536: training on one photo would need about 4,295 GB of memory, and "
                             "this machine has 4.0 GB; use an --image_size of at most 2000"),
    (["--val_images=100000"], "--val_images=100000 at --image_size=256 would need about 2,621 GB of memory, and this "
                              "machine has 4.0 GB; use --val_images of at most 152"),
])
def test_train_refuses_what_cannot_fit_before_building_anything(flags, line, four_gb, tmp_path, capsys):
    started = time.monotonic()
    status, lines = run_cli(capsys, "train", "--data=samples", f"--logdir={tmp_path / 'run'}", *flags)
    assert status == 2 and lines == [f"error: {line}"]
    assert time.monotonic() - started < 10 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, line", [
    (["--batch_size=100000"], "--batch_size=100000 at --size=256 would need about 2,621 GB of memory, and this "
                              "machine has 4.0 GB; use a --batch_size of at most 152 (about 400 bytes a pixel)"),
    (["--size=65536"], "--size=65536: scoring one photo would need about 2,336 GB of memory, and this machine has "
                       "4.0 GB; use a --size of at most 3162"),
    (["--grid_images=100000"], "--grid_images=100000: its figure can have 0 to 262 rows (matplotlib draws at most "
                               "65536 pixels a side); use at most 262"),
    (["--extremes=-1"], "--extremes=-1: its figure can have 0 to 262 rows (matplotlib draws at most 65536 pixels a "
                        "side); use at most 262"),
])
def test_evaluate_refuses_before_the_model_loads(flags, line, four_gb, tmp_path, capsys):
    status, lines = run_cli(capsys, "evaluate", "--model=/nonexistent.keras", f"--out_dir={tmp_path / 'eval'}", *flags)
    assert status == 2 and lines == [f"error: {line}"]


def test_export_refuses_photo_counts_that_cannot_be_held(four_gb, tmp_path, capsys):
    model = tmp_path / "tiny.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(model))
    status, lines = run_cli(capsys, "export", "--format=tflite", f"--model={model}", f"--output={tmp_path / 'out'}",
                        "--parity_photos=10000000", "--calibration_photos=10")
    assert status == 2 and lines == ["error: --parity_photos=10000000 and --calibration_photos=10 at the model's 32 x "
                                     "32 would need about 81.9 GB of memory, and this machine has 4.0 GB; use "
                                     "fewer photos"]
    status, lines = run_cli(capsys, "export", "--format=keras", f"--model={model}", f"--output={tmp_path / 'x.keras'}",
                        "--parity_photos=0")
    assert status == 2 and lines == ["error: --parity_photos must be at least 1, got 0"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.keras").exists()


def test_a_video_batch_is_clamped_to_what_memory_holds(monkeypatch):
    """Was: `video --batch_size=100000` kept every decoded frame until the batch filled."""
    assert video.frames_a_batch(100000, 1920, 1080) == 3  # 8 MP a batch
    assert video.frames_a_batch(100000, 64, 48) == 2604 and video.frames_a_batch(5, 64, 48) == 5
    assert video.frames_a_batch(8, 8000, 8000) == 1
    monkeypatch.setattr(inference, "BATCH_PIXELS", 3 * 64 * 48)
    colorizer = inference.KerasColorizer(models.build_generator("unet", image_size=32, base_filters=8, depth=5))
    pulled = []

    def frames():
        for t in range(10):
            pulled.append(t)
            yield np.full((48, 64, 3), 20 * t, np.uint8), t

    pipeline = video.FramePipeline(colorizer).run(frames(), batch_size=100000)
    next(pipeline)
    assert pulled == [0, 1, 2]  # three frames in memory at most, not all ten
    assert len(list(pipeline)) == 9


def test_the_video_command_says_it_clamps(tmp_path, capsys):
    model = tmp_path / "tiny.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(model))
    source = tiny_film(tmp_path / "in.mp4", frames=5)
    status, lines = run_cli(capsys, "video", source, f"--output={tmp_path / 'out.mp4'}", f"--model={model}",
                        "--batch_size=100000", "--noprogress")
    assert status == 0
    assert lines[0] == ("note: --batch_size=100000 is clamped to 2604 frames of 64 x 48 (8.0 MP, about 640 MB of "
                        "memory a batch); the colours do not depend on it")


def test_colorize_batch_runs_a_large_batch_in_parts_with_the_same_result(monkeypatch):
    colorizer = inference.KerasColorizer(models.build_generator("unet", image_size=32, base_filters=8, depth=5))
    photos = np.random.default_rng(0).integers(0, 255, (7, 20, 30, 3), dtype=np.uint8)
    whole = colorizer.colorize_batch(photos)
    sizes = []
    predict_ab = colorizer.predict_ab
    monkeypatch.setattr(colorizer, "predict_ab", lambda l: sizes.append(len(l)) or predict_ab(l))
    monkeypatch.setattr(inference, "BATCH_PIXELS", 2 * 20 * 30)
    parts = colorizer.colorize_batch(photos)
    assert sizes == [2, 2, 2, 1]
    np.testing.assert_allclose(parts.astype(int), whole.astype(int), atol=1)


def test_fid_features_stay_bounded_and_give_the_same_distance():
    """evaluate held every photo's 2048 Inception features (24 kB a photo, 2.4 GB for 100,000 photos);
    past 2048 photos a set now keeps their sums only, and the distance is the same."""
    from colorgan import metrics
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(0.3, 1.2, size=(260, 16))
    exact = metrics.frechet_distance(*metrics.feature_statistics(a), *metrics.feature_statistics(b))
    small, streamed = (metrics.FeatureSet(keep=100), metrics.FeatureSet(keep=100)), (metrics.FeatureSet(keep=100),
                                                                                    metrics.FeatureSet(keep=100))
    for start in range(0, 300, 32):
        streamed[0].add(a[start:start + 32])
        if start < 260:
            streamed[1].add(b[start:min(start + 32, 260)])
    assert streamed[0].samples() is None and streamed[0].batches == [] and len(streamed[0]) == 300
    assert metrics.fid_of_sets(*streamed) == pytest.approx(exact, rel=1e-9)
    small[0].add(a[:50])
    small[1].add(b[:40])  # both kept: the exact path on samples
    assert metrics.fid_of_sets(*small) == pytest.approx(metrics.fid(a[:50], b[:40]), rel=1e-12)
