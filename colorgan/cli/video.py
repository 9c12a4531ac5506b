"""colorgan video: colour a black-and-white film, with colour that stays steady from frame to frame.

    colorgan video old.mp4 --output=old-colour.mp4          # the colorizer shipped with colorgan
    colorgan video reel.mkv --output=reel.webm --model=runs/quickstart --crf=30

Reads mp4, mov, avi, mkv, webm, animated gif and whatever else FFmpeg (through PyAV) reads; writes the
format the output's suffix names (.mp4, .mov, .mkv: H.264; .webm: VP9; .avi: MPEG-4; .gif). Frame
count, size, timestamps (so the frame rate, variable or not) and the sound are kept; sound that the
output container cannot hold as it is gets re-encoded. A film that asks to be shown turned (as phones
record) comes out upright; its pixel aspect ratio and colour range, matrix, primaries and transfer are
kept (WebM and GIF get square pixels instead). The output appears only when it is complete.
--notemporal colours every frame on its own (it flickers). Exit status 0 on success, 2 on any problem,
which is named on one line.
"""
import os
import sys
import time

from absl import flags

from colorgan import memory, video
from colorgan.errors import ColorganError


def define_flags(fv):
    flags.DEFINE_string("model", None, "Training run dir, checkpoint, .keras file, SavedModel dir or .tflite file "
                        "(default: the colorizer shipped with colorgan).", flag_values=fv)
    flags.DEFINE_string("output", None, "The coloured film; its suffix picks the format "
                        "(default: IN-colour with IN's suffix).", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace the output if it exists.", flag_values=fv)
    flags.DEFINE_bool("temporal", True, "Steady the colour along the motion and reset it at scene cuts.",
                      flag_values=fv)
    flags.DEFINE_float("temporal_strength", 0.8, "How much colour is carried from frame to frame, 0 to 0.95: "
                       "higher is steadier but slower to follow real colour changes.", flag_values=fv)
    flags.DEFINE_float("saturation", 1.0, "Multiply the predicted colour (a*, b*) by this: above 1 livelier, "
                       "below 1 duller, 0 gray.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Frames run through the model together.", flag_values=fv)
    flags.DEFINE_integer("crf", 20, "Constant quality, lower is better: the x264 scale (0-51) for .mp4/.mov/"
                         ".mkv, VP9's (0-63) for .webm; .avi maps it to a quantiser.", flag_values=fv)
    flags.DEFINE_integer("max_pixels", video.MAX_PIXELS, "Refuse frames larger than this many pixels "
                         "(memory grows with frame size).", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show a progress bar (frames, fps, ETA) on stderr.", flag_values=fv)


class ProgressBar:
    """One redrawn line on stderr: frames done, a bar, frames per second and the time left."""

    def __init__(self, stream=sys.stderr, width=30):
        self.stream, self.width = stream, width
        self.start = self.drawn = time.monotonic()

    def __call__(self, done, total):
        now = time.monotonic()
        if now - self.drawn < 0.2 and done < total:  # redrawing every frame would cost more than it tells
            return
        self.drawn = now
        fps = done / max(now - self.start, 1e-9)
        filled = int(self.width * done / total)
        eta = time.strftime("%H:%M:%S", time.gmtime((total - done) / fps)) if fps else "?"
        self.stream.write(f"\r{done}/{total} frames [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{fps:.1f} fps, ETA {eta} ")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def default_output(source):
    root, suffix = os.path.splitext(source)
    return f"{root}-colour{suffix}"


def run(fv, args):
    """The command: colour one film; returns the exit status (problems raise ColorganError)."""
    from colorgan import inference
    if len(args) != 1:
        raise ColorganError(f"name one film to colour (got {len(args)} arguments); see colorgan video --help")
    source = args[0]
    target = fv.output or default_output(source)
    if not 0.0 <= fv.temporal_strength <= 0.95:
        raise ColorganError(f"--temporal_strength must be in 0..0.95, got {fv.temporal_strength}")
    inference.check_saturation(fv.saturation)
    # Check the film and the output before loading the model, so a bad input fails in a moment.
    video.check_output(target, fv.overwrite, fv.batch_size, fv.crf)
    container, stream = video.open_video(source, fv.max_pixels)
    width, height = stream.codec_context.width, stream.codec_context.height
    container.close()
    memory.refuse_over(width * height * memory.COLOUR_BYTES_PER_PIXEL, f"colouring a {width} x {height} frame",
                       "scale the film down first")
    batch = video.frames_a_batch(fv.batch_size, width, height)
    if batch < fv.batch_size:  # frames wait in memory for their batch: it stays bounded, whatever the flag says
        print(f"note: --batch_size={fv.batch_size} is clamped to {batch} frames of {width} x {height} "
              f"({batch * width * height / 1e6:.1f} MP, about {memory.size(batch * width * height * memory.COLOUR_BYTES_PER_PIXEL)} "
              "of memory a batch); the colours do not depend on it", file=sys.stderr, flush=True)
    colorizer = inference.load_colorizer(fv.model, fv.saturation)
    bar = ProgressBar() if fv.progress and sys.stderr.isatty() else None
    started = time.monotonic()
    # Ctrl-C and SIGTERM end the command in one line (cli.run_module); the unfinished film is removed.
    try:
        result = video.colorize_video(source, target, colorizer, temporal=fv.temporal,
                                      strength=fv.temporal_strength, batch_size=fv.batch_size, crf=fv.crf,
                                      max_pixels=fv.max_pixels, overwrite=fv.overwrite, on_progress=bar)
    finally:
        if bar:
            bar.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    seconds = time.monotonic() - started
    shots = f" in {len(result.cuts) + 1} shots" if fv.temporal else ""
    print(f"coloured {result.frames} frames{shots} of {source} into {target} in {seconds:.1f} s "
          f"({result.frames / max(seconds, 1e-9):.1f} fps)", flush=True)
    return 0


def main(argv=None):
    """`python -m colorgan.cli.video IN --output=OUT`, the same as `colorgan video`."""
    from colorgan import cli
    return cli.run_module(sys.modules[__name__], list(sys.argv if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
