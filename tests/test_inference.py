"""Full-resolution colourising: sizes, lightness, EXIF, colour profiles, and the model loader contract."""
import io
import json

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf
from PIL import Image, ImageCms

from colorgan import inference, photos
from colorgan.errors import ColorganError
from conftest import vivid_tiny_generator

IMAGE_SIZE = 32


def tiny_generator():
    return vivid_tiny_generator(IMAGE_SIZE)


@pytest.fixture(scope="module")
def colorizer():
    return inference.load_colorizer(tiny_generator())


@pytest.fixture(scope="module")
def photo():
    """A real photo cut to an odd size."""
    return skimage.data.astronaut()[:333, :511]


def lightness(rgb_uint8):
    return skimage.color.rgb2lab(rgb_uint8)[..., 0]


class Saturated(inference.Colorizer):
    """Paints every pixel a colour far outside sRGB for most lightnesses."""

    def predict_ab(self, l):
        return np.broadcast_to(np.float32([0.9, -0.9]), (*np.shape(l)[:-1], 2)).copy()


@pytest.mark.parametrize("shape", [(333, 517, 3), (517, 333, 3), (1, 1, 3), (1, 1), (7, 2, 1), (31, 33, 4)])
def test_output_has_the_input_size(colorizer, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    output = colorizer.colorize(image)
    assert output.shape == (shape[0], shape[1], 3) and output.dtype == np.uint8


def test_output_lightness_is_the_input_lightness(colorizer, photo):
    output = colorizer.colorize(photo)
    assert output.shape == photo.shape
    difference = np.abs(lightness(output) - lightness(photo))
    # Only uint8 rounding of the output separates the two.
    assert difference.mean() < 0.2 and difference.max() < 1.0
    # And the model did colour it: not just the input handed back.
    assert np.abs(output.astype(int) - photo).mean() > 1.0


def test_gray_photo_keeps_its_lightness_and_gains_colour(colorizer, photo):
    gray = np.round(skimage.color.rgb2gray(photo) * 255).astype(np.uint8)
    output = colorizer.colorize(gray)
    assert output.shape == (*gray.shape, 3)
    assert np.abs(lightness(output) - lightness(np.repeat(gray[..., None], 3, -1))).max() < 1.0
    assert np.abs(skimage.color.rgb2lab(output)[..., 1:]).mean() > 1.0


def test_saturation_scales_the_colour_and_keeps_the_lightness(colorizer, photo):
    gray = np.repeat(np.round(skimage.color.rgb2gray(photo) * 255).astype(np.uint8)[..., None], 3, -1)
    chroma = lambda rgb: np.hypot(*np.moveaxis(skimage.color.rgb2lab(rgb)[..., 1:], -1, 0)).mean()
    livelier = inference.SaturatedColorizer(colorizer, 1.5)
    l = np.random.default_rng(1).uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(livelier.predict_ab(l), np.clip(colorizer.predict_ab(l) * 1.5, -1, 1), rtol=1e-6)
    plain, vivid = colorizer.colorize(gray), livelier.colorize(gray)
    assert chroma(vivid) > 1.3 * chroma(plain)
    assert np.abs(lightness(vivid) - lightness(gray)).max() < 1.0
    # 0 is gray: the photo's own lightness and no colour at all.
    none = inference.SaturatedColorizer(colorizer, 0.0).colorize(gray)
    assert np.abs(none.astype(int) - gray).max() <= 1 and chroma(none) < 0.5
    # 1 is the model itself, unwrapped; a negative or missing gain is a user error.
    assert isinstance(inference.load_colorizer(tiny_generator(), saturation=1.0), inference.KerasColorizer)
    for bad in (-0.5, float("nan")):
        with pytest.raises(ColorganError, match="--saturation must be 0"):
            inference.load_colorizer(tiny_generator(), saturation=bad)


def test_out_of_gamut_colours_lose_chroma_not_lightness(photo):
    saturated = Saturated(IMAGE_SIZE, "test")
    output = saturated.colorize(photo)
    assert np.abs(lightness(output) - lightness(photo)).max() < 1.0
    # Plain clipping, which this avoids, would have shifted lightness by tens of units.
    l, _ = inference.prepare(photo[None], IMAGE_SIZE)
    clipped = inference.color.model_to_rgb(l, np.full((*l.shape[:-1], 2), [0.9, -0.9], np.float32))[0]
    clipped = np.round(clipped.numpy() * 255).astype(np.uint8)
    assert np.abs(lightness(clipped) - lightness(photo)).max() > 10


def test_batch_equals_single_photos(colorizer, photo):
    crops = np.stack([photo[:101, :77], photo[200:301, 300:377]])
    batch = colorizer.colorize_batch(crops)
    for crop, output in zip(crops, batch):
        np.testing.assert_array_equal(output, colorizer.colorize(crop))


def test_predict_ab_contract(colorizer):
    assert colorizer.image_size == IMAGE_SIZE and colorizer.kind == "keras"
    ab = colorizer.predict_ab(np.zeros((3, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32))
    assert isinstance(ab, np.ndarray) and ab.shape == (3, IMAGE_SIZE, IMAGE_SIZE, 2)
    with pytest.raises(ValueError, match="expects L of shape"):
        colorizer.predict_ab(np.zeros((1, IMAGE_SIZE + 1, IMAGE_SIZE, 1), np.float32))


def jpeg_with_orientation(pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied(photo):
    stored = photo[:40, :60]
    upright = photos.decode_photo(jpeg_with_orientation(stored, 6)).pixels  # stored turned 90 degrees
    assert upright.shape == (60, 40, 3)
    # Orientation 6 means "rotate 90 degrees clockwise to view".
    np.testing.assert_allclose(upright.astype(int), np.rot90(stored, -1).astype(int), atol=40)
    assert photos.decode_photo(jpeg_with_orientation(stored, 1)).pixels.shape == (40, 60, 3)


def test_colour_profile_is_carried_to_the_output(tmp_path, photo, colorizer):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "tagged.png"
    Image.fromarray(photo[:50, :50]).save(source, icc_profile=profile)
    read = photos.read_photo(source)
    assert read.icc_profile == profile
    target = tmp_path / "out" / "tagged.png"
    photos.write_photo(target, colorizer.colorize(read.pixels), read.icc_profile)
    with Image.open(target) as written:
        assert written.info.get("icc_profile") == profile and written.size == (50, 50)


def test_gray_and_16_bit_files_are_read(tmp_path, photo):
    gray = np.round(skimage.color.rgb2gray(photo[:20, :30]) * 65535).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "deep.png")
    pixels = photos.read_photo(tmp_path / "deep.png").pixels
    assert pixels.shape == (20, 30, 1) and pixels.dtype == np.uint8
    np.testing.assert_allclose(pixels[..., 0], gray >> 8, atol=1)


def test_unreadable_files_are_one_line_user_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ColorganError, match="cannot read .*bad.jpg"):
        photos.read_photo(bad)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_with_orientation(np.zeros((64, 64, 3), np.uint8), 1)[:300])
    with pytest.raises(ColorganError, match="cannot read"):
        photos.read_photo(truncated)
    with pytest.raises(ColorganError, match="cannot open"):
        photos.read_photo(tmp_path / "missing.png")


def test_writes_are_atomic(tmp_path):
    target = tmp_path / "out.png"

    def interrupted(f):
        f.write(b"half a png")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        photos.write_atomically(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_load_colorizer_from_keras_file_run_dir_and_checkpoint(tmp_path, colorizer):
    generator = colorizer.model
    l = np.random.default_rng(1).uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    expected = colorizer.predict_ab(l)

    keras_file = tmp_path / "generator.keras"
    generator.save(keras_file)
    # A training run: model.json and a CheckpointManager checkpoint of an object with `generator`.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.json").write_text(json.dumps({
        "generator": "unet", "generator_options": {"base_filters": 8, "depth": 5}, "image_size": IMAGE_SIZE}))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(generator=generator), run / "checkpoints", 2)
    prefix = manager.save()

    for spec in (keras_file, run, run / "checkpoints", prefix, prefix + ".index"):
        loaded = inference.load_colorizer(str(spec))
        assert loaded.image_size == IMAGE_SIZE, spec
        np.testing.assert_allclose(loaded.predict_ab(l), expected, atol=1e-5, err_msg=str(spec))


def test_load_colorizer_names_the_problem(tmp_path):
    with pytest.raises(ColorganError, match="no model at"):
        inference.load_colorizer(tmp_path / "nothing_here")
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(ColorganError, match="metadata.json is not a model"):
        inference.load_colorizer(tmp_path / "metadata.json")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(ColorganError, match="not a valid .tflite"):
        inference.load_colorizer(fake)
