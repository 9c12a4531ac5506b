"""Property tests: random bytes and random images through decoding and colouring end cleanly.

Every case ends in a colourised image of the input's size or in a clean, typed error; never a crash,
a hang or a wrong shape.
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from colorgan import color, data, inference, models, photos
from colorgan.errors import ColorganError

MAGIC = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 "]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def colorizer():
    return inference.KerasColorizer(models.build_generator("unet", image_size=32, base_filters=8, depth=5))


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=600))
def test_random_bytes_decode_to_rgb_or_a_clean_error(prefix, body):
    try:
        rgb = data.decode_image(tf.constant(prefix + body)).numpy()
    except tf.errors.InvalidArgumentError:
        return
    assert rgb.ndim == 3 and rgb.shape[-1] == 3 and rgb.size > 0
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=600))
def test_random_bytes_through_the_colorize_path_end_cleanly(colorizer, prefix, body):
    try:
        photo = photos.decode_photo(prefix + body, name="fuzz")
    except ColorganError as e:
        assert "fuzz" in str(e) and "\n" not in str(e)
        return
    out = colorizer.colorize(photo.pixels)
    assert out.shape == (*photo.pixels.shape[:2], 3) and out.dtype == np.uint8


MODES_BY_FORMAT = {"PNG": ["L", "LA", "RGB", "RGBA", "P", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
                   "GIF": ["L", "P"], "BMP": ["L", "RGB"], "WEBP": ["RGB", "RGBA"]}
FORMAT_MODE = st.sampled_from([(f, m) for f, modes in MODES_BY_FORMAT.items() for m in modes])


def encoded_image(fmt, mode, height, width, seed):
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = rgb.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@FUZZ
@given(format_mode=FORMAT_MODE, height=st.integers(1, 48), width=st.integers(1, 48), seed=st.integers(0, 2 ** 16))
def test_random_images_of_every_mode_decode_and_colorize_at_their_own_size(colorizer, format_mode, height, width, seed):
    fmt, mode = format_mode
    contents = encoded_image(fmt, mode, height, width, seed)
    rgb = data.decode_image(tf.constant(contents)).numpy()
    assert rgb.shape == (height, width, 3)
    photo = photos.decode_photo(contents, name=f"{fmt}-{mode}")
    out = colorizer.colorize(photo.pixels)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    # The output keeps the input's lightness (up to uint8 rounding and gamut clipping).
    rgb_in = np.broadcast_to(photo.pixels / 255.0, (height, width, 3)).astype(np.float32)  # gray: 1 -> 3
    l_in = color.rgb_to_lab(rgb_in)[..., 0]
    l_out = color.rgb_to_lab(out / np.float32(255.0))[..., 0]
    assert float(tf.reduce_mean(tf.abs(l_in - l_out))) < 2.0


CUT_FORMATS = st.sampled_from([("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("GIF", {}),
                               ("TIFF", {}), ("BMP", {}), ("WEBP", {"lossless": True})])


@FUZZ
@given(format_options=CUT_FORMATS, height=st.integers(1, 48), width=st.integers(1, 48), seed=st.integers(0, 2 ** 16),
       keep=st.floats(0.0, 0.999))
def test_a_file_cut_short_fails_cleanly_or_decodes_to_the_whole_picture(format_options, height, width, seed, keep):
    # Never a picture with its bottom filled with black or gray, and exit status 0.
    fmt, options = format_options
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    (image.convert("P") if fmt == "GIF" else image).save(buf, fmt, **options)
    whole = photos.decode_photo(buf.getvalue()).pixels
    try:
        cut = photos.decode_photo(buf.getvalue()[:int(keep * len(buf.getvalue()))], name="cut").pixels
    except ColorganError:
        return
    np.testing.assert_array_equal(cut, whole)
