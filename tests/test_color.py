"""Lab conversion against skimage.color, the independent reference."""
import numpy as np
import pytest
import tensorflow as tf
from skimage import color as skcolor

from colorgan import color
from conftest import read_rgb


def rgb_cube(steps=33):
    g = np.linspace(0.0, 1.0, steps)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 1, 3)


def test_rgb_to_lab_matches_skimage_over_the_whole_cube():
    cube = rgb_cube()
    ours = color.rgb_to_lab(cube.astype(np.float32)).numpy()
    np.testing.assert_allclose(ours, skcolor.rgb2lab(cube), atol=1e-3, rtol=0)


def test_rgb_to_lab_matches_skimage_on_real_photos(sample_photos):
    for path in sample_photos[:4]:
        rgb = read_rgb(path)[::3, ::3] / 255.0
        ours = color.rgb_to_lab(rgb.astype(np.float32)).numpy()
        np.testing.assert_allclose(ours, skcolor.rgb2lab(rgb), atol=1e-3, rtol=0, err_msg=path)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(0)
    lab = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-110, 110, 5000), rng.uniform(-110, 110, 5000)], -1)
    lab = lab.reshape(-1, 1, 3)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = skcolor.lab2rgb(lab)
    np.testing.assert_allclose(color.lab_to_rgb(lab.astype(np.float32)).numpy(), reference, atol=1e-3)


def test_round_trip_holds_to_1e4():
    cube = rgb_cube().astype(np.float32)
    back = color.lab_to_rgb(color.rgb_to_lab(cube)).numpy()
    assert np.abs(back - cube).max() < 1e-4


def test_model_normalisation_and_inverse():
    lab = tf.constant([[[100.0, 110.0, -110.0], [0.0, 0.0, 0.0], [50.0, 55.0, 0.0]]])
    l, ab = color.encode_lab(lab)
    np.testing.assert_allclose(l.numpy()[..., 0], [[1.0, -1.0, 0.0]])
    np.testing.assert_allclose(ab.numpy(), [[[1.0, -1.0], [0.0, 0.0], [0.5, 0.0]]])
    np.testing.assert_allclose(color.decode_lab(l, ab).numpy(), lab.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(3,), (7, 3), (2, 5, 4, 3), (1, 2, 2, 2, 3)])
def test_any_leading_shape_and_inside_tf_function(shape):
    rgb = np.random.default_rng(1).random(shape).astype(np.float32)
    fn = tf.function(lambda x: color.lab_to_rgb(color.rgb_to_lab(x)))
    out = fn(rgb).numpy()
    assert out.shape == shape
    np.testing.assert_allclose(out, rgb, atol=1e-4)


def test_works_inside_tf_data():
    rgb = np.random.default_rng(2).random((4, 8, 8, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(rgb).map(color.rgb_to_lab)
    got = np.stack(list(ds.as_numpy_iterator()))
    np.testing.assert_allclose(got, skcolor.rgb2lab(rgb.astype(np.float64)), atol=1e-3)


def test_lightness_of_8bit_photos_comes_from_luminance_alone_and_matches_skimage():
    codes = np.random.default_rng(1).integers(0, 256, (200_000, 3), dtype=np.uint8)
    ours = color.lightness_of_srgb8(codes).numpy()[:, 0]
    np.testing.assert_allclose(ours, skcolor.rgb2lab(codes[None] / 255.0)[0, :, 0], atol=1e-3, rtol=0)


def test_8bit_colours_survive_lab_and_back_through_the_tables():
    codes = np.random.default_rng(2).integers(0, 256, (200_000, 3), dtype=np.uint8)
    lab = skcolor.rgb2lab(codes[None] / 255.0)[0].astype(np.float32)
    back = color.lab_to_srgb8(lab[:, 0], lab[:, 1], lab[:, 2]).numpy()
    difference = np.abs(back.astype(int) - codes)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999


def test_out_of_gamut_colours_keep_their_lightness_and_hue_and_lose_chroma():
    rng = np.random.default_rng(3)
    L = rng.uniform(5, 95, 20_000).astype(np.float32)
    a, b = (rng.uniform(-120, 120, 20_000).astype(np.float32) for _ in range(2))
    out = color.lab_to_srgb8(L, a, b).numpy()
    lab = skcolor.rgb2lab(out[None] / 255.0)[0]
    assert np.abs(lab[:, 0] - L).max() < 1.0  # uint8 rounding, not the tens that clipping costs
    # Hue kept: the output's (a, b) points the way the asked-for one does (where it kept some chroma).
    kept = np.hypot(lab[:, 1], lab[:, 2]) > 10
    cosine = (lab[kept, 1] * a[kept] + lab[kept, 2] * b[kept]) / (np.hypot(lab[kept, 1], lab[kept, 2]) * np.hypot(a[kept], b[kept]))
    assert np.percentile(cosine, 1) > 0.98
    assert np.all(np.hypot(lab[:, 1], lab[:, 2]) <= np.hypot(a, b) + 1.5)  # chroma only ever drops
