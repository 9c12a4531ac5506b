"""Clean interruption and clean API errors: Ctrl-C and SIGTERM end every command with one line and the
shell's status (130, 143), leaving nothing half-written; degenerate arrays given to the Python API raise
a ValueError that says what is wrong, not TensorFlow's internal errors."""
import importlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from colorgan import cli, inference, models, video
from conftest import tiny_film

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
@pytest.mark.parametrize("interruption", ["Ctrl-C", "SIGTERM"])
def test_every_command_ends_in_one_line_on_ctrl_c_and_sigterm(command, interruption, monkeypatch, capsys):
    """Whatever the command is doing when the signal comes (here: its work, which sends the signal)."""
    module = importlib.import_module(cli.COMMANDS[command])
    cleaned = []

    def work(fv, args):
        try:
            if interruption == "Ctrl-C":
                raise KeyboardInterrupt  # what Python makes of SIGINT
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
            pytest.fail("SIGTERM did not interrupt the command")
        finally:
            cleaned.append(True)

    monkeypatch.setattr(module, "run", work)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["colorgan", command] + (["film.mp4"] if command == "video" else []))
    err = capsys.readouterr().err
    assert exit_info.value.code == {"Ctrl-C": 130, "SIGTERM": 143}[interruption]
    assert err.strip().splitlines() == [f"interrupted by {interruption}; nothing unfinished was kept"]
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_in_a_real_video_run_is_one_line_and_exit_130(tmp_path):
    """Was: a 20-line KeyboardInterrupt traceback. The film is interrupted once its output has begun."""
    model = tmp_path / "tiny.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(model))
    source, out = tiny_film(tmp_path / "in.mp4", frames=600), tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "colorgan", "video", str(source), f"--output={out / 'film.mp4'}",
                             f"--model={model}", "--batch_size=1", "--noprogress"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (out.is_dir() and any(out.iterdir())):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.5)  # well into the frames
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "interrupted by Ctrl-C; nothing unfinished was kept", err[-3000:]
    assert "Traceback" not in err and list(out.iterdir()) == []


@pytest.fixture(scope="module")
def colorizer():
    return inference.KerasColorizer(models.build_generator("unet", image_size=32, base_filters=8, depth=5))


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 0), (0, 7), (5, 0, 1), (0, 9, 4)])
def test_an_empty_photo_is_a_value_error_that_says_so(colorizer, shape):
    """Was: TensorFlow's InvalidArgumentError "input image must be of non-zero size"."""
    with pytest.raises(ValueError, match=r"has nothing to colour; pass photos of at least 1 x 1 pixels"):
        colorizer.colorize(np.zeros(shape, np.uint8))


def test_degenerate_batches_and_inputs(colorizer):
    # An empty batch gives an empty answer of the right shape, without running the model.
    empty = colorizer.colorize_batch(np.zeros((0, 6, 5, 3), np.uint8))
    assert empty.shape == (0, 6, 5, 3) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match=r"with B of 1 or more, got \(0, 32, 32, 1\)"):
        colorizer.predict_ab(np.zeros((0, 32, 32, 1), np.float32))  # was: a TF error about filter depth
    with pytest.raises(ValueError, match="NaN or infinite"):
        colorizer.predict_ab(np.full((1, 32, 32, 1), np.nan, np.float32))  # was: NaN colours, silently
    with pytest.raises(ValueError, match="expected uint8"):
        colorizer.colorize(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="expected uint8"):
        colorizer.colorize(np.zeros((4, 4, 2), np.uint8))
    assert colorizer.colorize(np.zeros((1, 1), np.uint8)).shape == (1, 1, 3)  # the smallest photo works
    assert colorizer.colorize(np.full((1, 3000, 3), 128, np.uint8)).shape == (1, 3000, 3)
    with pytest.raises(ValueError, match="frames must be uint8 H x W x 3"):  # was: ZeroDivisionError
        list(video.FramePipeline(colorizer).run([(np.zeros((0, 0, 3), np.uint8), 0)]))


@pytest.mark.parametrize("metric", ["psnr", "ab_mae", "ab_auc", "colourfulness"])
def test_metrics_of_photos_without_pixels_say_so(metric):
    """Was: NaN and two RuntimeWarnings (a mean over no pixels)."""
    from colorgan import metrics
    empty = np.zeros((1, 0, 0, 3), np.uint8)
    with pytest.raises(ValueError, match=r"with at least one pixel each, got shape \(1, 0, 0, 3\)"):
        getattr(metrics, metric)(*([empty] if metric == "colourfulness" else [empty, empty]))
    assert getattr(metrics, metric)(*([np.zeros((0, 4, 4, 3))] * (1 if metric == "colourfulness" else 2))).shape[0] == 0
