"""Steady colour for films: flicker and PSNR of `colorgan video`'s temporal filter against colouring
each frame on its own, and its speed at 640x480.

    python benchmarks/video.py                  # the shipped model, about 5 minutes on a 2-core CPU
    python benchmarks/video.py --scenes=4 --frames_per_scene=6 --size=160x120   # a quick look

The clips are made from real photos (skimage's, and /work/shared/data/val when present): each scene
is a 640x480 window panning across one photo with hand-held shake, film grain and exposure flicker,
all known exactly; scenes are joined by hard cuts. Flicker is the mean |delta ab| (CIE a*b* units,
Euclidean) between consecutive output frames of one scene, after undoing the known camera motion.
PSNR (dB, uint8 RGB) is against the true colours. The speed is end to end on an mp4 file: decode,
model, filter, encode. Timings depend on the machine's load; the line before the table says it.
"""
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model to use (default: the shipped one).")
flags.DEFINE_integer("scenes", 12, "Scenes (one photo each), joined by cuts.")
flags.DEFINE_integer("frames_per_scene", 10, "Frames in each scene.")
flags.DEFINE_string("size", "640x480", "Frame size, WxH.")
flags.DEFINE_integer("speed_frames", 48, "Frames of the clip timed end to end (0: skip the timing).")
flags.DEFINE_float("strength", 0.8, "Temporal strength.")

SHARED_VAL = "/work/shared/data/val"
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photos(count):
    """Real colour photos as uint8 RGB arrays: skimage's first, then the shared validation set."""
    import skimage.data
    from PIL import Image
    found = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
    if os.path.isdir(SHARED_VAL):
        for name in sorted(os.listdir(SHARED_VAL))[:max(0, count - len(found))]:
            found.append(np.asarray(Image.open(os.path.join(SHARED_VAL, name)).convert("RGB")))
    return found[:count]


def scene(photo, frames, width, height, rng):
    """(frames, crop origins): a window panning over the photo with shake, grain and exposure flicker."""
    from PIL import Image
    velocity = rng.uniform(-4, 4, size=2)  # pixels a frame at the output size
    shake = rng.integers(-2, 3, size=(frames, 2))
    offsets = np.round(np.arange(frames)[:, None] * velocity).astype(int) + shake
    offsets -= offsets.min(axis=0)
    span = offsets.max(axis=0)
    canvas = np.asarray(Image.fromarray(photo).resize((width + span[1], height + span[0]), Image.BICUBIC),
                        np.float32)
    clip = []
    for oy, ox in offsets:
        frame = canvas[oy:oy + height, ox:ox + width] * rng.uniform(0.97, 1.03)  # exposure flicker
        frame = frame + rng.normal(0, 4, frame.shape[:2])[..., None]              # grain (luminance)
        clip.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
    return clip, offsets


def lab_ab(rgb):
    from colorgan import color
    return color.rgb_to_lab(np.asarray(rgb, np.float32) / 255.0).numpy()[..., 1:]


def flicker(outputs, offsets):
    """Mean |delta ab| between consecutive frames of one scene, the known motion undone."""
    ab = [lab_ab(frame) for frame in outputs]
    height, width = ab[0].shape[:2]
    values = []
    for t in range(len(ab) - 1):
        dy, dx = offsets[t + 1] - offsets[t]  # frame t+1 at (y, x) shows what frame t shows at (y+dy, x+dx)
        ys, xs = slice(max(0, -dy), min(height, height - dy)), slice(max(0, -dx), min(width, width - dx))
        later = ab[t + 1][ys, xs]
        earlier = ab[t][ys.start + dy:ys.stop + dy, xs.start + dx:xs.stop + dx]
        values.append(np.linalg.norm(later - earlier, axis=-1).mean())
    return float(np.mean(values))


def colour(colorizer, frames, temporal):
    from colorgan import video
    pipeline = video.FramePipeline(colorizer, video.TemporalFilter(FLAGS.strength) if temporal else None)
    return [rgb for rgb, _ in pipeline.run(((f, None) for f in frames), batch_size=8)], pipeline.cuts


def speed(colorizer, frames, temporal):
    """Frames per second, end to end, colouring an mp4 of ``frames`` into another (traced already)."""
    import av

    from colorgan import video
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "in.mp4")
        with av.open(source, "w") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame)))
            container.mux(stream.encode(None))
        start = time.perf_counter()
        video.colorize_video(source, os.path.join(folder, "out.mp4"), colorizer, temporal)
        return len(frames) / (time.perf_counter() - start)


def main(argv):
    from colorgan import inference, metrics
    width, height = map(int, FLAGS.size.split("x"))
    rng = np.random.default_rng(0)
    scenes = [scene(p, FLAGS.frames_per_scene, width, height, rng) for p in photos(FLAGS.scenes)]
    frames = [f for clip, _ in scenes for f in clip]
    colorizer = inference.load_colorizer(FLAGS.model)
    print(f"{len(scenes)} scenes x {FLAGS.frames_per_scene} frames at {width}x{height}, model {colorizer.source}; "
          f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    rows = {}
    for name, temporal in (("per frame", False), ("temporal", True)):
        out, cuts = colour(colorizer, frames, temporal)
        starts = np.cumsum([0] + [len(c) for c, _ in scenes])
        scene_flicker = [flicker(out[a:b], offsets) for (a, b), (_, offsets) in zip(zip(starts, starts[1:]), scenes)]
        psnr = float(np.mean(metrics.psnr(np.stack(frames), np.stack(out))))
        rows[name] = dict(flicker=float(np.mean(scene_flicker)), psnr=psnr, cuts=cuts)
    rows["true colours"] = dict(flicker=float(np.mean([flicker(c, o) for c, o in scenes])), psnr=float("inf"))
    expected_cuts = [int(n) for n in np.cumsum([len(c) for c, _ in scenes])[:-1]]
    if FLAGS.speed_frames:
        clip = (frames * (1 + FLAGS.speed_frames // len(frames)))[:FLAGS.speed_frames]
        rows["per frame"]["fps"] = speed(colorizer, clip, False)
        rows["temporal"]["fps"] = speed(colorizer, clip, True)
    print(f"\n| colouring | flicker mean abs delta ab | PSNR dB | fps ({width}x{height}, end to end) |")
    print("| --- | --- | --- | --- |")
    for name, row in rows.items():
        fps = f"{row['fps']:.2f}" if "fps" in row else "-"
        print(f"| {name} | {row['flicker']:.3f} | {row['psnr']:.2f} | {fps} |")
    base, steady = rows["per frame"], rows["temporal"]
    print(f"\nflicker ratio temporal / per frame: {steady['flicker'] / base['flicker']:.3f} (target <= 0.5)")
    print(f"PSNR change: {steady['psnr'] - base['psnr']:+.3f} dB (target >= -0.3)")
    print(f"cuts found {steady['cuts']}, true cuts {expected_cuts}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    app.run(main)
