"""`colorgan video`: formats, timestamps and sound kept; steadier colour than frame by frame; cuts
reset it; bad films refused with one line and no output. Tiny clips (64x48, a few frames) made with PyAV."""
from fractions import Fraction

import av
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorgan import color, errors, inference, video
from colorgan.cli import video as video_cli
from colorgan.video import temporal
from conftest import vivid_tiny_generator

IMAGE_SIZE = 32
WIDTH, HEIGHT = 64, 48
AUDIO = {"mp4": "aac", "mov": "aac", "mkv": "aac", "webm": "libopus", "avi": "mp3", "gif": None}
CODEC = {"mp4": "libx264", "mov": "libx264", "mkv": "libx264", "webm": "libvpx-vp9", "avi": "mpeg4", "gif": "gif"}


@pytest.fixture(scope="module")
def generator():
    return vivid_tiny_generator(IMAGE_SIZE)


@pytest.fixture(scope="module")
def colorizer(generator):
    return inference.load_colorizer(generator)


@pytest.fixture(scope="module")
def model_file(generator, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "generator.keras"
    generator.save(path)
    return path


def panning(photo, count, step=(1, 2), grain=3.0, seed=0):
    """(frames, crop origins): a 64x48 window moving ``step`` pixels a frame over a real photo, with grain."""
    rng = np.random.default_rng(seed)
    canvas = np.asarray(Image.fromarray(photo).resize((WIDTH + 2 * count + 8, HEIGHT + 2 * count + 8)), np.float32)
    origins = [(4 + t * step[0], 4 + t * step[1]) for t in range(count)]
    frames = [canvas[y:y + HEIGHT, x:x + WIDTH] + rng.normal(0, grain, (HEIGHT, WIDTH, 1)) for y, x in origins]
    return [np.clip(np.round(f), 0, 255).astype(np.uint8) for f in frames], np.array(origins)


def write_clip(path, frames, rate=10, audio=None, times=None):
    """A film of uint8 RGB ``frames`` in the format its suffix names; ``times`` in 1/1000 s (VFR)."""
    kind = path.suffix[1:]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODEC[kind], rate=rate)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "rgb8" if kind == "gif" else "yuv420p"
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        sound = container.add_stream(audio, rate=16000 if audio != "libopus" else 48000) if audio else None
        for t, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = times[t] if times is not None else t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound:
            samples = sound.rate * len(frames) // rate
            tone = (0.3 * np.sin(np.arange(samples) * 0.05)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = sound.rate, 0
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.time) for f in container.decode(stream)]
        audio = [s.codec_context.codec.canonical_name for s in container.streams.audio]
        container.seek(0)
        sound = sum(f.samples / f.sample_rate for f in container.decode(audio=0)) if audio else 0.0
        return dict(frames=len(frames), size=(stream.codec_context.width, stream.codec_context.height),
                    rate=stream.average_rate, times=[t for _, t in frames], pixels=[p for p, _ in frames],
                    audio=audio, sound=sound)


def run_cli(*args):
    """video_cli's exit status (0, or 2 from SystemExit on a ColorganError)."""
    try:
        return video_cli.main(["colorgan video", "--noprogress", *map(str, args)])
    except SystemExit as e:
        return e.code


def flicker(frames, origins):
    """Mean |delta ab| between consecutive frames, the known motion undone."""
    ab = [color.rgb_to_lab(f.astype(np.float32) / 255.0).numpy()[..., 1:] for f in frames]
    values = []
    for t in range(len(ab) - 1):
        dy, dx = origins[t + 1] - origins[t]
        later, earlier = ab[t + 1][:HEIGHT - dy, :WIDTH - dx], ab[t][dy:, dx:]
        values.append(np.linalg.norm(later - earlier, axis=-1).mean())
    return float(np.mean(values))


def colour(colorizer, frames, temporal_filter=None, batch_size=3):
    pipeline = video.FramePipeline(colorizer, temporal_filter)
    return [rgb for rgb, _ in pipeline.run([(f, None) for f in frames], batch_size)], pipeline.cuts


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mp4", "mov", "mkv", "webm", "avi", "gif"])
def test_keeps_frames_size_rate_and_sound(kind, model_file, tmp_path):
    frames, _ = panning(skimage.data.astronaut(), 6)
    source = write_clip(tmp_path / f"in.{kind}", frames, audio=AUDIO[kind])
    target = tmp_path / "out" / f"colour.{kind}"
    assert run_cli(source, "--output", target, "--model", model_file, "--batch_size=4") == 0
    before, after = probe(source), probe(target)
    assert after["frames"] == before["frames"] == 6
    assert after["size"] == (WIDTH, HEIGHT) and after["rate"] == before["rate"] == 10
    assert after["times"] == pytest.approx(before["times"], abs=1e-3)
    assert len(after["audio"]) == len(before["audio"]) == (0 if kind == "gif" else 1)
    assert after["sound"] == pytest.approx(before["sound"], abs=1e-3) and (kind == "gif" or after["sound"] > 0.5)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary file left
    # Coloured: the vivid generator paints; the input was near gray only where the photo is.
    assert np.mean([np.std(p.astype(float), axis=-1).mean() for p in after["pixels"]]) > 1.0


def test_sound_is_re_encoded_when_the_container_cannot_hold_it(model_file, tmp_path, capsys):
    frames, _ = panning(skimage.data.coffee(), 4)
    source = write_clip(tmp_path / "in.avi", frames, audio="mp3")
    target = tmp_path / "out.webm"  # WebM takes Opus or Vorbis only
    assert run_cli(source, "--output", target, "--model", model_file) == 0
    assert probe(target)["audio"] == ["opus"]
    assert "re-encoded as libopus" in capsys.readouterr().err


def test_variable_frame_rate_keeps_every_timestamp(model_file, tmp_path):
    frames, _ = panning(skimage.data.chelsea(), 6)
    times = [0, 100, 150, 400, 420, 900]  # ms: irregular, as from a phone or a GIF
    source = write_clip(tmp_path / "vfr.mkv", frames, times=times)
    target = tmp_path / "vfr.mp4"
    assert run_cli(source, "--output", target, "--model", model_file) == 0
    assert probe(target)["times"] == pytest.approx([t / 1000 for t in times], abs=1e-3)


def test_motion_estimate_finds_a_known_shift():
    gray = skimage.data.camera().astype(np.float32) / 127.5 - 1.0
    previous, current = gray[100:228, 100:228], gray[97:225, 105:233]  # current(y, x) = previous(y - 3, x + 5)
    motion = temporal.estimate_motion(previous, current)
    assert np.abs(motion - np.array([3.0, -5.0])).max() < 0.1
    moved, inside = temporal.warp(previous, motion)
    assert np.abs(moved - current)[inside].mean() < 0.01


def test_temporal_filter_flickers_less_than_frame_by_frame(colorizer):
    frames, origins = panning(skimage.data.astronaut(), 8, grain=6.0)
    single, _ = colour(colorizer, frames)
    steady, cuts = colour(colorizer, frames, video.TemporalFilter())
    assert cuts == []
    assert flicker(steady, origins) < 0.6 * flicker(single, origins)
    # Lightness is the film's own either way (up to rounding and gamut mapping).
    lightness = [color.rgb_to_lab(np.stack(x).astype(np.float32) / 255.0).numpy()[..., 0] for x in (single, steady)]
    assert np.abs(lightness[0] - lightness[1]).mean() < 1.0


def test_a_cut_resets_the_colour(colorizer):
    first, _ = panning(skimage.data.astronaut(), 4)
    second, _ = panning(skimage.data.coffee(), 4)
    frames = first + second
    single, _ = colour(colorizer, frames)
    steady, cuts = colour(colorizer, frames, video.TemporalFilter(strength=0.9))
    assert cuts == [4]
    # Right after the cut the colour is the new shot's own guess, nothing carried from the astronaut...
    np.testing.assert_array_equal(steady[4], single[4])
    # ... while inside a shot the filter does carry colour.
    assert not np.array_equal(steady[5], single[5]) and not np.array_equal(steady[1], single[1])


def test_a_killed_run_leaves_no_output(colorizer, tmp_path, monkeypatch):
    frames, _ = panning(skimage.data.astronaut(), 6)
    source = write_clip(tmp_path / "in.mp4", frames)
    target = tmp_path / "out" / "film.mp4"
    calls = []

    def interrupt(done, total):
        calls.append((done, total))
        if done == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        video.colorize_video(source, target, colorizer, batch_size=2, on_progress=interrupt)
    assert calls == [(1, 6), (2, 6), (3, 6)]
    assert list(target.parent.iterdir()) == []


def fourcc_replaced(path):
    data = path.read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))  # a codec no FFmpeg knows
    return path


def audio_only(path):
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=16000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def no_frames(path):
    with av.open(str(path), "w") as container:  # a video track declared, only sound in it
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = container.add_stream("aac", rate=16000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def garbage(path):
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(3000))
    return path


def truncated(path, share):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * share)])
    return path


BAD_INPUTS = {
    "garbage": (lambda tmp, clip: garbage(tmp / "junk.mp4"), "cannot read"),
    "truncated mp4": (lambda tmp, clip: truncated(clip("in.mp4"), 0.6), "cannot read"),
    "truncated mkv": (lambda tmp, clip: truncated(clip("in.mkv"), 0.7), "truncated"),
    "no frames": (lambda tmp, clip: no_frames(tmp / "empty.mkv"), "no frames"),
    "no video track": (lambda tmp, clip: audio_only(tmp / "sound.m4a"), "no video track"),
    "unknown codec": (lambda tmp, clip: fourcc_replaced(clip("in.avi")), "cannot decode"),
    "too large": (lambda tmp, clip: clip("in.mp4"), "--max_pixels"),
    "missing": (lambda tmp, clip: tmp / "nothing-here.mp4", "no video at"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_one_line_no_output(case, model_file, tmp_path, capsys):
    frames, _ = panning(skimage.data.astronaut(), 20)
    make, words = BAD_INPUTS[case]
    source = make(tmp_path, lambda name: write_clip(tmp_path / name, frames, audio="aac" if "mkv" in name else None))
    out = tmp_path / "out"
    extra = ["--max_pixels=1000"] if case == "too large" else []
    assert run_cli(source, "--output", out / "film.mp4", "--model", model_file, *extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and str(source) in err, err
    assert words in err, err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("output, words", [("film.flv", "unknown video format"), ("exists.mp4", "already exists")])
def test_bad_output_is_refused(output, words, model_file, tmp_path, capsys):
    frames, _ = panning(skimage.data.astronaut(), 3)
    source = write_clip(tmp_path / "in.mp4", frames)
    (tmp_path / "exists.mp4").write_bytes(b"keep me")
    assert run_cli(source, "--output", tmp_path / output, "--model", model_file) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert (tmp_path / "exists.mp4").read_bytes() == b"keep me"
    assert not (tmp_path / "film.flv").exists()


def test_sigterm_mid_run_leaves_no_output(model_file, tmp_path, monkeypatch):
    import os
    import signal
    frames, _ = panning(skimage.data.astronaut(), 6)
    source = write_clip(tmp_path / "in.mp4", frames)
    out = tmp_path / "out"
    picture = video.Writer.picture
    written = []

    def picture_then_terminate(self, rgb, time):
        picture(self, rgb, time)
        written.append(time)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a job scheduler would
    monkeypatch.setattr(video.Writer, "picture", picture_then_terminate)
    assert run_cli(source, "--output", out / "film.mp4", "--model", model_file, "--batch_size=1") == 128 + 15
    assert len(written) == 2 and list(out.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not errors._raise_terminated  # only while the command runs


def test_overwriting_the_input_itself(model_file, tmp_path):
    frames, _ = panning(skimage.data.coffee(), 4)
    source = write_clip(tmp_path / "film.mkv", frames)
    assert run_cli(source, "--output", source, "--model", model_file) == 2  # not without --overwrite
    assert run_cli(source, "--output", source, "--model", model_file, "--overwrite") == 0
    assert probe(source)["frames"] == 4 and sorted(p.name for p in tmp_path.iterdir()) == ["film.mkv"]


def test_progress_bar_shows_frames_fps_and_eta():
    import io
    stream = io.StringIO()
    bar = video_cli.ProgressBar(stream)
    bar(10, 10)
    bar.close()
    assert "10/10 frames" in stream.getvalue() and "fps" in stream.getvalue() and "ETA" in stream.getvalue()
