"""Shared fixtures: real photos that ship with installed packages, and the optional shared photo set."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


@pytest.fixture(scope="session")
def sample_photos():
    """Paths of real colour photos from the installed packages (matplotlib, skimage, sklearn)."""
    from colorgan import sources
    return sources.sample_photo_files()


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(os.path.join(SHARED_DATA, "val")):
        pytest.skip(f"no shared photo set at {SHARED_DATA}")
    return SHARED_DATA


def encode(image, fmt, **kw):
    """A PIL image encoded as ``fmt`` bytes."""
    import io
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def vivid_tiny_generator(image_size):
    """A tiny U-Net that paints colours as strong as a trained model's.

    A fresh U-Net predicts almost gray (|ab| < 1); scaling its last layer makes gamut handling,
    lightness preservation and export parity mean something.
    """
    from colorgan import models
    generator = models.build_generator("unet", image_size=image_size, base_filters=8, depth=5)
    last = generator.get_layer("up0_conv")
    last.kernel.assign(last.kernel * 30.0)
    return generator


def hint_model_built_for_it(image_size=32, gain=1.0, gray=True):
    """A tiny U-Net with colour hints whose answer is known: a hint at model pixel p adds ``gain`` times its
    a*b* (model units) to the pre-activation of the colour head at p and the 8 pixels around it, and
    nothing anywhere else. With ``gray`` the model paints every photo gray without hints (its last layer is
    zero), so there the colour is tanh(gain * hint) and elsewhere none; otherwise its colours are as vivid as
    ``vivid_tiny_generator``'s."""
    from colorgan import models
    generator = models.build_generator("unet", image_size=image_size, base_filters=8, depth=5, hints=True)
    last = generator.get_layer("up0_conv")
    if gray:
        last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    else:
        last.kernel.assign(last.kernel * 30.0)
    conv, out = generator.get_layer("hint_head_conv"), generator.get_layer("hint_head_out")
    spread = np.zeros(conv.kernel.shape, np.float32)  # (3, 3, 3, 16): a+, a-, b+, b- at the pixel itself
    spread[1, 1, 0, 0], spread[1, 1, 0, 1], spread[1, 1, 1, 2], spread[1, 1, 1, 3] = 1, -1, 1, -1
    total = np.zeros(out.kernel.shape, np.float32)    # (3, 3, 16, 2): their sum over the 3 x 3 around
    total[:, :, 0, 0], total[:, :, 1, 0], total[:, :, 2, 1], total[:, :, 3, 1] = gain, -gain, gain, -gain
    conv.kernel.assign(spread)
    out.kernel.assign(total)
    return generator


def run_cli(capsys, *argv):
    """(exit status, stderr lines) of `colorgan ARGV...` run in this process."""
    from colorgan import cli
    try:
        status = cli.main(["colorgan", *map(str, argv)])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err.strip().splitlines()


def read_rgb(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def tiny_film(path, frames=120, width=64, height=48):
    """An H.264 film of a moving gradient, ``frames`` long at 25 fps (smooth, so it encodes fast)."""
    import av
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            gray = ((x + 2 * t) * 3 + y) % 256
            rgb = np.stack([gray, gray // 2 + 60, 255 - gray], -1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
