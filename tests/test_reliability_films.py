"""Films as phones and cameras write them: whatever metadata changes how a film is shown (its display
matrix, sample aspect ratio, colour range, matrix, primaries and transfer) survives colouring or is
applied to the pixels.

Every hostile film is made here with PyAV from an upright picture, stored the way a camera stores it
(turned, squeezed, full range, another matrix) with the metadata that tells a player how to show it.
The films are coloured with a constant colour (a*b* fixed, so that the output is known from the
lightness alone); what a player shows of the output must be that colour on the picture the player
showed of the source.
"""
from fractions import Fraction

import av
import numpy as np
import pytest

from colorgan import inference, video

WIDTH, HEIGHT = 64, 48


class ConstantColour(inference.Colorizer):
    """Every pixel gets a* = 27.5, b* = -22: the output follows from the photo's lightness alone."""
    kind = "test"

    def __init__(self):
        super().__init__(32, "constant colour")

    def predict_ab(self, l):
        return np.broadcast_to(np.array([0.25, -0.2], np.float32), self._check_input(l).shape[:3] + (2,)).copy()


def picture(width=WIDTH, height=HEIGHT):
    """An upright picture that shows which way is up and which side is left: smooth ramps, and a bright
    block in the top-left corner."""
    y, x = np.mgrid[0:height, 0:width]
    gray = 40 + 120 * x / width + 60 * y / height
    gray[:height // 3, :width // 4] = 235
    rgb = np.stack([gray, gray * 0.9, gray * 0.8], -1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def write_film(path, stored, codec="libx264", rotation=None, hflip=False, aspect=None, colour_range=None,
               matrix=None, primaries=None, transfer=None, frames=3):
    """A film whose frames are ``stored`` (uint8 RGB), encoded with the given matrix and range and
    tagged with them, and with the display matrix and aspect ratio a player should apply."""
    height, width = stored.shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        context = stream.codec_context
        if aspect:
            context.sample_aspect_ratio = aspect
        if colour_range:
            context.color_range = colour_range
        if matrix:
            context.colorspace = matrix
        if primaries:
            context.color_primaries, context.color_trc = primaries, transfer
        if rotation is not None or hflip:
            stream.set_display_rotation(rotation or 0, hflip=hflip)
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24").reformat(
                format="yuv420p", dst_colorspace={6: 5}.get(matrix or 5, matrix or 5), dst_color_range=colour_range or 1)
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def shown(path):
    """What a player shows of a film's first frame, and how: (RGB decoded with the matrix and range the
    film declares, or those players assume, BT.709 from HD up and BT.601 below, limited range; the
    sample aspect ratio; the counterclockwise rotation; the declared tags)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        guessed = 1 if frame.width >= 1280 or frame.height > 576 else 5
        matrix = {6: 5, 10: 9}.get(frame.colorspace, frame.colorspace) if frame.colorspace in (1, 5, 6, 9, 10) else guessed
        full = frame.color_range == 2 or frame.format.name.startswith("yuvj")
        options = {} if frame.format.name.startswith("pal") else dict(src_colorspace=matrix,
                                                                      src_color_range=2 if full else 1)
        rgb = frame.to_ndarray(format="rgb24", **options)
        aspect = Fraction(stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio or 1)
        context = stream.codec_context
        return rgb, aspect, frame.rotation, (context.colorspace, context.color_range, context.color_primaries,
                                             context.color_trc)


def colour(source, target, **options):
    return video.colorize_video(source, target, ConstantColour(), temporal=False, **options)


def assert_close(actual, expected, mean=3.0):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.mean() < mean, difference.mean()


# Stored turned one way, shown turned back: (how the camera stored it, the display matrix's rotation, hflip).
TURNS = {"phone held left (90)": (lambda a: np.rot90(a, -1), 90, False),
         "phone held right (-90)": (lambda a: np.rot90(a, 1), -90, False),
         "upside down (180)": (lambda a: a[::-1, ::-1], 180, False),
         "selfie mirror (hflip)": (lambda a: a[:, ::-1], 0, True)}


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif", ".avi"])
@pytest.mark.parametrize("how", sorted(TURNS))
def test_a_film_shown_turned_comes_out_upright(how, suffix, tmp_path):
    """Was: a clip whose container says "display rotated 90 degrees" came out on its side, exit 0."""
    store, rotation, hflip = TURNS[how]
    upright = picture()
    source = write_film(tmp_path / "in.mp4", np.ascontiguousarray(store(upright)), rotation=rotation, hflip=hflip)
    seen, _, _, _ = shown(source)
    assert seen.shape != upright.shape or not np.array_equal(seen, upright)  # stored turned, really
    colour(source, tmp_path / f"out{suffix}")
    out, aspect, turned, _ = shown(tmp_path / f"out{suffix}")
    assert turned == 0 and aspect == 1
    assert_close(out, ConstantColour().colorize(upright), mean=4.0 if suffix == ".gif" else 3.0)


@pytest.mark.parametrize("suffix, kept", [(".mp4", True), (".mkv", True), (".avi", True), (".webm", False),
                                          (".gif", False)])
def test_an_anamorphic_film_keeps_its_shape(suffix, kept, tmp_path):
    """Pixels twice as wide as high: kept as such where the format says so, else made square."""
    wide = picture(2 * WIDTH, HEIGHT)  # as shown
    from PIL import Image
    stored = np.asarray(Image.fromarray(wide).resize((WIDTH, HEIGHT), Image.BILINEAR))
    source = write_film(tmp_path / "in.mkv", stored, aspect=Fraction(2))
    colour(source, tmp_path / f"out{suffix}")
    out, aspect, _, _ = shown(tmp_path / f"out{suffix}")
    assert out.shape[1] * aspect == 2 * WIDTH and out.shape[0] == HEIGHT
    assert (aspect == 2) == kept
    expected = ConstantColour().colorize(wide if not kept else stored)
    assert_close(out, expected, mean=5.0 if suffix == ".gif" else 3.0)


@pytest.mark.parametrize("case", ["full range VP9", "BT.601 at HD size", "BT.2020 HLG (an iPhone's HDR)",
                                  "BT.709 at SD size"])
@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi"])
def test_colour_range_and_matrix_survive(case, suffix, tmp_path):
    """A player decodes with the range and matrix a film declares (or assumes BT.709 from HD up): the
    output must declare what it was encoded with, or be encoded with what players assume."""
    size = (1280, 720) if case == "BT.601 at HD size" else (WIDTH, HEIGHT)
    upright = picture(*size)
    film = {"full range VP9": dict(codec="libvpx-vp9", colour_range=2),
            "BT.601 at HD size": dict(matrix=6, frames=2),
            "BT.2020 HLG (an iPhone's HDR)": dict(matrix=9, primaries=9, transfer=18),
            "BT.709 at SD size": dict(matrix=1)}[case]
    source = write_film(tmp_path / ("in.webm" if film.get("codec") == "libvpx-vp9" else "in.mkv"), upright, **film)
    seen, _, _, _ = shown(source)
    assert_close(seen, upright, mean=2.0)  # the reference player reads the source right
    colour(source, tmp_path / f"out{suffix}")
    out, _, _, tags = shown(tmp_path / f"out{suffix}")
    assert_close(out, ConstantColour().colorize(seen), mean=2.5)
    if suffix != ".avi" and case == "BT.2020 HLG (an iPhone's HDR)":
        assert tags[2:] == (9, 18)  # primaries and transfer: a player shows it as HDR, as the source
