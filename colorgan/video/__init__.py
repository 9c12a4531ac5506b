"""Colour a film: decode with PyAV, colour the frames in batches, steady the colour, encode atomically.

    result = colorize_video("old.mp4", "old-colour.mp4", inference.load_colorizer(None))

Coloured frame by frame, a film flickers: a small change in a frame changes the model's guess.
`video.temporal.TemporalFilter` steadies the colour at the model's resolution, where it is cheap, and
resets at cuts. The full-resolution lightness is the film's own, as for photos.

Timestamps are kept frame by frame, so variable frame rates, GIF delays and the sync with the sound
survive. Sound is copied when the output container takes its codec and re-encoded otherwise. What
changes how a film is shown survives too (`Display`): a display matrix (a phone's "turn by 90
degrees") is applied to the pixels, a sample aspect ratio is kept (made square for WebM and GIF), and
the colour matrix, range, primaries and transfer are read as the film declares them and declared
again (AVI and GIF, which cannot, get what players assume).
"""
import dataclasses
import functools
import math
import os
import pathlib
import tempfile
from fractions import Fraction

import numpy as np

from colorgan import outputs
from colorgan.errors import ColorganError
from colorgan.video.temporal import TemporalFilter


# --- Frames through the model, in batches ---

def frames_a_batch(batch_size, width, height):
    """--batch_size, clamped so that a batch of frames holds at most inference.BATCH_PIXELS pixels: the
    frames wait in memory until the batch is full, and the colour does not depend on the batch."""
    from colorgan import inference
    return max(1, min(batch_size, inference.BATCH_PIXELS // max(width * height, 1)))


@functools.lru_cache(maxsize=None)
def graphs(image_size):
    """(prepare, finish) as TF functions, traced once a process for every frame size and batch."""
    import tensorflow as tf

    from colorgan import inference
    frames = tf.TensorSpec([None, None, None, 3], tf.uint8)
    l_full, ab = tf.TensorSpec([None, None, None, 1], tf.float32), tf.TensorSpec([None, None, None, 2], tf.float32)
    return (tf.function(lambda x: inference.prepare(x, image_size), input_signature=[frames]),
            tf.function(inference.finish, input_signature=[l_full, ab]))


class FramePipeline:
    """uint8 RGB frames -> coloured uint8 RGB frames: the model runs on batches, the filter frame by frame."""

    def __init__(self, colorizer, temporal_filter=None):
        self.colorizer, self.filter = colorizer, temporal_filter
        self._prepare, self._finish = graphs(colorizer.image_size)
        self.cuts = []  # indices of the frames that started a new shot

    def run(self, frames, batch_size=8):
        """Yield (coloured frame, tag) for each (uint8 H x W x 3 frame, tag) of ``frames``, in order."""
        batch, index = [], 0
        for item in frames:
            if not batch and not index:  # the first frame's size bounds the batch (frames_a_batch)
                batch_size = frames_a_batch(batch_size, item[0].shape[1], item[0].shape[0]) if item[0].ndim == 3 \
                    else batch_size
            batch.append(item)
            if len(batch) >= batch_size:
                yield from self._colour(batch, index)
                index, batch = index + len(batch), []
        yield from self._colour(batch, index)

    def _colour(self, batch, first_index):
        if not batch:
            return
        images = np.stack([frame for frame, _ in batch])
        if images.ndim != 4 or images.shape[-1] != 3 or not images.shape[1] or not images.shape[2]:
            raise ValueError(f"frames must be uint8 H x W x 3 with H and W of 1 or more, got {images.shape[1:]}")
        from colorgan import inference
        step = max(1, inference.BATCH_PIXELS // (images.shape[1] * images.shape[2]))
        for start in range(0, len(images), step):
            l_full, l_model = self._prepare(images[start:start + step])
            ab = np.asarray(self.colorizer.predict_ab(l_model.numpy()), np.float32)
            for k in range(len(ab) if self.filter else 0):
                ab[k], cut = self.filter(l_model[k, ..., 0].numpy(), ab[k])
                if cut:
                    self.cuts.append(first_index + start + k)
            for k, rgb in enumerate(self._finish(l_full, ab).numpy()):
                yield rgb, batch[start + k][1]


# --- Reading and writing films with PyAV ---

MAX_PIXELS = 4096 * 2160  # DCI 4K; larger frames need --max_pixels, since memory grows with them


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    muxer: str
    codec: str
    keeps_audio: frozenset = None  # audio codecs copied as they are; None: any
    audio_codec: str = None        # what other audio is re-encoded to; None: the format has no sound
    keeps_aspect: bool = True      # holds a sample aspect ratio (else the pixels are made square)
    keeps_colour: bool = True      # holds the colour matrix, range, primaries and transfer tags


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"})
FORMATS = {
    ".mp4": OutputFormat("mp4", "libx264", _MP4_AUDIO, "aac"),
    ".mov": OutputFormat("mov", "libx264", _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be"}, "aac"),
    ".mkv": OutputFormat("matroska", "libx264", None, "aac"),
    # VP9 has no sample aspect ratio, and FFmpeg's WebM muxer writes none for it.
    ".webm": OutputFormat("webm", "libvpx-vp9", frozenset({"opus", "vorbis"}), "libopus", keeps_aspect=False),
    # AVI cannot reorder frames, so no B-frames: MPEG-4 part 2 without them. It holds no colour tags.
    ".avi": OutputFormat("avi", "mpeg4", frozenset({"mp3", "ac3", "pcm_s16le", "pcm_u8"}), "libmp3lame",
                         keeps_colour=False),
    ".gif": OutputFormat("gif", "gif", frozenset(), keeps_aspect=False, keeps_colour=False),
}


def output_format(path):
    found = FORMATS.get(pathlib.Path(path).suffix.lower())
    if found is None:
        raise ColorganError(f"cannot write {path}: unknown video format; name the output .mp4, .mov, .mkv, "
                            ".webm, .avi or .gif")
    return found


def reason(error):
    """FFmpeg's own words for an error, without the errno and file name PyAV adds."""
    return getattr(error, "strerror", None) or str(error)


def open_video(path, max_pixels=MAX_PIXELS):
    """(open input container, its video stream); every problem found before decoding is a ColorganError."""
    import av
    if not pathlib.Path(path).is_file():
        raise ColorganError(f"no video at {path}; check the path")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise ColorganError(f"cannot read {path} as a video ({reason(e)}); check that the file is complete and "
                            "is a film (mp4, mov, avi, mkv, webm or animated gif)") from None
    video = next((s for s in container.streams.video  # not the cover art
                  if not s.disposition & av.stream.Disposition.attached_pic), None)
    context, problem = video and video.codec_context, None
    if video is None:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        problem = f"{path} has no video track (it holds {kinds}); pass a film, not a sound or subtitle file"
    elif context is None:
        problem = (f"{path} has video in a codec PyAV's FFmpeg cannot decode; convert it first, e.g. "
                   f"`ffmpeg -i {path} -c:v libx264 -c:a copy converted.mkv`")
    elif context.width * context.height > max_pixels:
        problem = (f"{path} is {context.width}x{context.height}, above --max_pixels={max_pixels}; scale it "
                   "down first or raise --max_pixels (memory grows with frame size)")
    elif not context.width:
        problem = f"{path} has a video track without a frame size; check that the file is complete"
    if problem:
        container.close()
        raise ColorganError(problem)
    video.thread_type = "AUTO"  # decode with frame threads: the model should be the only slow part
    return container, video


def output_clock(form, rate, tick):
    """The output's time base. AVI counts frames and GIF 1/100 s. The others keep the source's clock if
    it holds whole frames, else (Matroska's milliseconds, say) get a finer one that does: a constant
    frame rate stays exact and a variable one keeps the source's precision."""
    if form.muxer in ("avi", "gif"):
        return 1 / rate if form.muxer == "avi" else Fraction(1, 100)
    ticks_a_frame = 1 / (rate * tick)
    return tick if ticks_a_frame.denominator == 1 else 1 / (rate * math.ceil(ticks_a_frame))


# --- How a film is meant to be shown ---

# FFmpeg's colour matrices (AVColorSpace) that its scaler converts with, and what each means to it.
SPC_BT709, SPC_UNSPECIFIED, SPC_BT470BG, SPC_SMPTE170M, SPC_SMPTE240M, SPC_BT2020_NCL, SPC_BT2020_CL = 1, 2, 5, 6, 7, 9, 10
_SCALER_MATRIX = {SPC_BT709: 1, 4: 4, SPC_BT470BG: 5, SPC_SMPTE170M: 5, SPC_SMPTE240M: 7, SPC_BT2020_NCL: 9,
                  SPC_BT2020_CL: 9}
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2


def guessed_matrix(width, height):
    """The matrix players assume for a film that names none: BT.709 from HD up, BT.601 below."""
    return SPC_BT709 if width >= 1280 or height > 576 else SPC_SMPTE170M


def turn_of(matrix):
    """The turn that shows a frame as its display matrix (9 int32, 16.16 fixed point) asks, as FFmpeg's
    own autorotate does: '', 'clock', 'cclock', 'transpose', 'antitranspose', 'hflip', 'vflip' or
    'rotate180'; None for an angle that is not a multiple of 90 degrees."""
    a, b, c, d = (matrix[i] / 65536 for i in (0, 1, 3, 4))
    counterclockwise = -math.degrees(math.atan2(b / (math.hypot(b, d) or 1), a / (math.hypot(a, c) or 1)))
    theta = -round(counterclockwise)  # clockwise, in [0, 360)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return "transpose" if c > 0 else "clock"
    if abs(theta - 270) < 1:
        return "antitranspose" if c < 0 else "cclock"
    if abs(theta - 180) < 1:
        return {(True, True): "rotate180", (True, False): "hflip", (False, True): "vflip"}.get((a < 0, d < 0), "")
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return "vflip" if d < 0 else ""
    return None


_TURNS = {"": lambda a: a, "clock": lambda a: np.rot90(a, -1), "cclock": lambda a: np.rot90(a, 1),
          "transpose": lambda a: a.transpose(1, 0, 2), "antitranspose": lambda a: np.rot90(a, -1)[::-1],
          "hflip": lambda a: a[:, ::-1], "vflip": lambda a: a[::-1], "rotate180": lambda a: a[::-1, ::-1]}


@dataclasses.dataclass(frozen=True)
class Display:
    """How a film's frames are shown, which colouring must keep: its display matrix (phones record
    sideways and say "turn by 90 degrees"), its sample aspect ratio (anamorphic film, DV), and the colour
    matrix, range, primaries and transfer its pixels are in. The turn is applied to the pixels, so the
    output is upright for every player and format; the aspect ratio is kept where the output format
    holds one, else applied to the pixels; the colour tags are kept where the format holds them, and
    the pixels are encoded with the very matrix and range the output says (or players assume)."""
    coded: tuple            # (width, height) of the decoded frames
    scaled: tuple           # (width, height) after making the pixels square, where the output needs it
    turn: str               # see turn_of
    aspect: Fraction        # the output's sample aspect ratio (after the turn): 1 for square pixels
    yuv: bool               # the frames are Y'CbCr (else RGB or a palette: no matrix, no range)
    matrix: int             # AVColorSpace the frames were encoded with (never unspecified: players' guess)
    range: int              # RANGE_LIMITED or RANGE_FULL
    primaries: int          # AVColorPrimaries and AVColorTransferCharacteristic, copied as they are
    transfer: int
    notes: tuple = ()

    @property
    def size(self):
        """(width, height) of the output frames: upright, and square-pixelled where the format needs it."""
        width, height = self.scaled
        return (height, width) if self.turn in ("clock", "cclock", "transpose", "antitranspose") else (width, height)

    def rgb(self, frame):
        """A decoded frame as the uint8 RGB array a player would show (before its aspect ratio)."""
        width, height = self.scaled
        options = dict(format="rgb24", width=width, height=height)
        if self.yuv:
            options.update(src_colorspace=_SCALER_MATRIX.get(self.matrix, 5), src_color_range=self.range)
        return np.ascontiguousarray(_TURNS[self.turn](frame.to_ndarray(**options)))


def display_of(path, video, form):
    """The Display of ``video`` (a stream of the open film at ``path``) for output format ``form``: read
    from the film's first frame (where FFmpeg puts the display matrix), in a second look at the file."""
    import av
    with av.open(str(path)) as container:
        stream = container.streams.video[video.index]
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError:
            first = None  # decode() reports the damage in its own words
    context, notes = video.codec_context, []
    width, height = context.width, context.height
    matrix_data = next((bytes(d) for d in (first.side_data if first is not None else [])
                        if "DISPLAYMATRIX" in str(d.type)), None)
    turn = turn_of(np.frombuffer(matrix_data, np.int32)) if matrix_data and len(matrix_data) == 36 else ""
    if turn is None:
        notes.append(f"the film asks to be shown turned by {first.rotation:g} degrees counterclockwise, which is "
                     "not a quarter turn; it is coloured and written as it is stored")
        turn = ""
    aspect = video.sample_aspect_ratio or context.sample_aspect_ratio or Fraction(1)
    aspect = Fraction(aspect) if aspect > 0 else Fraction(1)
    scaled = (width, height)
    if aspect != 1 and not form.keeps_aspect:  # square pixels, the size the film is shown at
        scaled = (round(width * aspect), height) if aspect > 1 else (width, round(height / aspect))
        aspect = Fraction(1)
    if turn in ("clock", "cclock", "transpose", "antitranspose"):
        aspect = 1 / aspect
    pixel_format = first.format if first is not None else context.format
    yuv = pixel_format is not None and not pixel_format.is_rgb and not pixel_format.name.startswith(("pal", "gray"))
    source = first if first is not None else context
    matrix = source.colorspace if source.colorspace in _SCALER_MATRIX else guessed_matrix(width, height)
    full = source.color_range == RANGE_FULL or (pixel_format is not None and pixel_format.name.startswith("yuvj"))
    return Display((width, height), scaled, turn, aspect, yuv, matrix, RANGE_FULL if full else RANGE_LIMITED,
                   source.color_primaries, source.color_trc, tuple(notes))


class Writer:
    """One output film: the coloured video stream, the sound copied or re-encoded, timestamps kept."""

    def __init__(self, path, form, source, audio, crf, display):
        import av
        self.container = av.open(str(path), "w", format=form.muxer)
        self.form, self.last_pts, self.notes = form, None, list(display.notes)
        self.rate, self.tick = Fraction(source.average_rate or source.guessed_rate or 25), source.time_base
        self.video = self.container.add_stream(form.codec, rate=self.rate)
        width, height = self.video.width, self.video.height = display.size
        if display.aspect != 1:  # old films are often anamorphic, DV too
            self.video.codec_context.sample_aspect_ratio = display.aspect
        self.time_base = self.video.time_base = self.video.codec_context.time_base = output_clock(
            form, self.rate, self.tick)
        # 4:2:0 is what players expect, but odd sizes cannot be halved: those keep full chroma.
        even = width % 2 == 0 and height % 2 == 0 or form.codec == "mpeg4"
        self.video.pix_fmt = "pal8" if form.codec == "gif" else "yuv420p" if even else "yuv444p"
        # The frames are encoded with the matrix and range the output declares; a format that declares
        # none gets what players assume for its size, in limited range.
        context = self.video.codec_context
        if form.keeps_colour:
            self.matrix, self.range = display.matrix, display.range
            context.colorspace, context.color_range = display.matrix, display.range
            context.color_primaries, context.color_trc = display.primaries, display.transfer
        else:
            self.matrix, self.range = guessed_matrix(width, height), RANGE_LIMITED
        quantiser = str(int(np.clip(round(crf / 8), 2, 31)))  # MPEG-4 has no CRF: CRF 18 -> 2, 23 -> 3
        self.video.options = {"libx264": {"crf": str(crf), "preset": "medium"},
                              "libvpx-vp9": {"crf": str(crf), "b": "0", "cpu-used": "4", "row-mt": "1"},
                              "mpeg4": {"qmin": quantiser, "qmax": quantiser}}.get(form.codec, {})
        self.audio = {s: track for s in audio if (track := self._add_audio(s, av)) is not None}

    def _add_audio(self, source, av):
        name = source.codec_context.codec.canonical_name if source.codec_context else "unknown"
        if self.form.audio_codec is None or source.codec_context is None:
            why = f"{self.form.muxer} files have no sound" if self.form.audio_codec is None else "it cannot be decoded"
            self.notes.append(f"the sound track ({name}) is dropped: {why}")
            return None
        if self.form.keeps_audio is None or name in self.form.keeps_audio:
            return self.container.add_stream_from_template(source), True
        rates = av.codec.Codec(self.form.audio_codec, "w").audio_rates
        rate = source.codec_context.sample_rate if not rates or source.codec_context.sample_rate in rates else 48000
        layout = source.codec_context.layout.name if source.codec_context.channels <= 2 else "stereo"
        self.notes.append(f"the sound track ({name}) is re-encoded as {self.form.audio_codec}")
        return self.container.add_stream(self.form.audio_codec, rate=rate, layout=layout), False

    def sound(self, packet):
        """Copy, or decode and re-encode, one packet of the source's sound."""
        target, copy = self.audio.get(packet.stream, (None, None))
        if target is not None and copy and packet.dts is not None:  # dts None: the end-of-stream packet
            packet.stream = target
            self.container.mux(packet)
        elif target is not None and not copy:
            for frame in packet.decode():
                frame.pts = None  # the encoder counts the samples; it re-frames them to its own size anyway
                self.container.mux(target.encode(frame))

    def picture(self, rgb, time):
        """Encode one frame shown at ``time`` (seconds, a Fraction; None: one frame after the last)."""
        import av
        if time is not None and abs(time * self.rate - round(time * self.rate)) <= self.rate * self.tick / 2:
            time = round(time * self.rate) / self.rate  # on the frame grid, up to the source clock's rounding
        step = max(1, round(1 / (self.rate * self.time_base)))
        pts = round(time / self.time_base) if time is not None else (self.last_pts or -step) + step
        # Containers need rising timestamps; a repeated or backward one (a broken source, or two frames
        # within one GIF tick) moves to the next tick rather than losing a frame.
        pts = pts if self.last_pts is None or pts > self.last_pts else self.last_pts + 1
        if self.form.codec == "gif":
            frame = av.VideoFrame.from_ndarray(gif_palette_image(rgb), format="pal8")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                format=self.video.pix_fmt, dst_colorspace=_SCALER_MATRIX[self.matrix], dst_color_range=self.range)
            frame.colorspace, frame.color_range = self.matrix, self.range
        frame.pts = self.last_pts = pts
        self.container.mux(self.video.encode(frame))

    def close(self):
        self.container.mux(self.video.encode(None))  # flush the encoders' delayed frames
        for target, copy in self.audio.values():
            if not copy:
                self.container.mux(target.encode(None))
        self.container.close()


def gif_palette_image(rgb):
    """(indices, ARGB palette) for PyAV's pal8: a palette made for the frame, not a fixed 3-3-2 one."""
    from PIL import Image
    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), np.uint8)
    palette[:len(colours), 0], palette[:len(colours), 1:] = 255, colours
    return np.asarray(image), palette


@dataclasses.dataclass
class Result:
    frames: int
    cuts: list   # frame indices where the filter started a new shot
    notes: list  # what happened to the sound, for the user


def decode(container, video, writer, path, display):
    """(RGB frame, time in seconds) for each frame; the sound goes to the writer on the way.

    Matroska and WebM cut short still open and decode, only to stop early. So every stream's packets are
    followed, and data that ends well before the duration the file declares is a truncated file (the
    sound counts too: a film whose sound runs past its last frame is whole).
    """
    import av
    count, end, packets = 0, Fraction(0), container.demux()
    while True:
        try:
            packet = next(packets)
            frames = packet.decode() if packet.stream is video else []
        except StopIteration:
            break
        except av.FFmpegError as e:
            raise ColorganError(f"{path} is corrupt after frame {count} ({reason(e)}); repair or re-encode "
                                "it first") from None
        if packet.pts is not None and packet.time_base:
            end = max(end, (packet.pts + (packet.duration or 0)) * packet.time_base)
        if packet.stream.type == "audio":
            writer.sound(packet)
        for frame in frames:
            count += 1
            time = frame.pts * frame.time_base if frame.pts is not None else None
            # A stream may change size midway; the output keeps the first frame's size (display.rgb).
            yield display.rgb(frame), time
    if count == 0:
        raise ColorganError(f"{path} has a video track with no frames in it; check that the file is complete")
    declared, start = Fraction(container.duration or 0, 1_000_000), Fraction(container.start_time or 0, 1_000_000)
    slack = max(2 / Fraction(video.average_rate or 25), declared / 100)  # rounding; an intact file has no gap
    if declared and end - start < declared - slack:
        raise ColorganError(f"{path} ends at {float(end - start):.1f} s of the {float(declared):.1f} s it "
                            "declares: the file looks truncated; copy it again or re-encode it to repair it")


def check_output(target, overwrite=False, batch_size=8, crf=20):
    """The OutputFormat for ``target``, once the options are known to suit it."""
    form = output_format(target)
    outputs.check("--output", target, overwrite=overwrite)
    top = 63 if form.codec == "libvpx-vp9" else 51
    if batch_size < 1 or not 0 <= crf <= top:
        raise ColorganError(f"--batch_size must be at least 1 and --crf in 0..{top} for {pathlib.Path(target).suffix} "
                            f"(got {batch_size}, {crf})")
    return form


def colorize_video(source, target, colorizer, temporal=True, strength=0.8, batch_size=8, crf=20,
                   max_pixels=MAX_PIXELS, overwrite=False, on_progress=None):
    """Colour the film ``source`` into ``target``; returns a Result. A user-fixable problem is a
    ColorganError, and nothing appears at ``target`` then: the film goes to a temporary file beside it,
    renamed into place only when complete. ``on_progress(done, total)`` follows each frame."""
    from colorgan import photos
    source, target = pathlib.Path(source), pathlib.Path(target)
    form = check_output(target, overwrite, batch_size, crf)
    pipeline = FramePipeline(colorizer, TemporalFilter(strength) if temporal else None)
    container, video = open_video(source, max_pixels)
    with container:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
        os.close(fd)
        try:
            result = transcode(container, video, temporary, form, pipeline, batch_size, crf, on_progress)
            os.chmod(temporary, 0o666 & ~photos.current_umask())  # mkstemp makes 0600
            os.replace(temporary, target)
        finally:
            pathlib.Path(temporary).unlink(missing_ok=True)
    return result


def transcode(container, video, path, form, pipeline, batch_size, crf, on_progress):
    import av
    display = display_of(container.name, video, form)
    try:
        writer = Writer(path, form, video, container.streams.audio, crf, display)
    except (av.FFmpegError, ValueError) as e:
        raise ColorganError(f"cannot write {form.muxer} for {container.name} ({reason(e)}); try .mkv") from None
    # For the progress bar: the frame count the file claims, else its duration times the frame rate.
    total = video.frames or round((container.duration or 0) / 1_000_000 * float(video.average_rate or 0))
    done = 0
    try:
        for rgb, time in pipeline.run(decode(container, video, writer, container.name, display), batch_size):
            writer.picture(rgb, time)
            done += 1
            if on_progress:
                on_progress(done, max(total, done))
        writer.close()
    except av.FFmpegError as e:  # reading problems are ColorganErrors already: this is the writing side
        raise ColorganError(f"cannot encode {container.name} as {form.muxer} ({reason(e)}); try .mkv") from None
    finally:
        try:
            writer.container.close()  # a no-op after close(); after a failure it lets the file go
        except av.FFmpegError:
            pass
    return Result(done, pipeline.cuts, writer.notes)
