"""ONNX export: the contract ("l" [N, S, S, 1] -> "ab" [N, S, S, 2], NHWC), parity with Keras on real
photos under ONNX Runtime, the full-resolution path through load_colorizer, and `colorgan export`."""
import json

import numpy as np
import pytest
import skimage.data

pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx: pip install '.[onnx]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX tests need onnxruntime: pip install '.[onnx]'")

from colorgan import cli, export, inference, onnx_export, saving  # noqa: E402
from conftest import vivid_tiny_generator  # noqa: E402

IMAGE_SIZE = 32
# The bound, taken in Lab units (ab * 110), 110 times stricter than in the model's ab/110 units.
MAX_AB_DIFF_LAB = 1e-3


@pytest.fixture(scope="module")
def generator():
    return vivid_tiny_generator(IMAGE_SIZE)


@pytest.fixture(scope="module")
def written(generator, tmp_path_factory):
    model = onnx_export.convert_onnx(generator, IMAGE_SIZE)
    return onnx_export.write_onnx(model, tmp_path_factory.mktemp("onnx") / "colorgan.onnx", IMAGE_SIZE,
                                  source="tiny test unet")


def test_the_file_keeps_the_contract(written):
    session = onnxruntime.InferenceSession(str(written), providers=["CPUExecutionProvider"])
    ((l,), (ab,)) = session.get_inputs(), session.get_outputs()
    assert (l.name, l.type, l.shape[1:]) == ("l", "tensor(float)", [IMAGE_SIZE, IMAGE_SIZE, 1])
    assert (ab.name, ab.type, ab.shape[1:]) == ("ab", "tensor(float)", [IMAGE_SIZE, IMAGE_SIZE, 2])
    assert isinstance(l.shape[0], str)  # a free batch dimension
    meta = session.get_modelmeta().custom_metadata_map
    info = json.loads(meta["colorgan"])
    assert meta["image_size"] == str(IMAGE_SIZE) and info["format"] == "onnx" and info["source"] == "tiny test unet"
    assert "L/50 - 1" in info["normalisation"]["input"]


def test_ab_matches_keras_on_real_photos(generator, written):
    colorizer = inference.load_colorizer(written)
    assert isinstance(colorizer, inference.ONNXColorizer) and colorizer.image_size == IMAGE_SIZE
    photos_l = export.l_batches("samples", "all", IMAGE_SIZE, 11)
    reference = inference.KerasColorizer(generator)
    check = export.parity(reference, colorizer, photos_l)
    print(f"onnx: {check} on {len(photos_l)} real photos")
    assert check["max_ab_diff"] <= MAX_AB_DIFF_LAB
    assert np.abs(reference.predict_ab(photos_l[0])).max() * 110 > 20  # vivid colours: the bound means something
    batch = np.concatenate(photos_l[:3])  # several photos in one run
    assert np.abs(colorizer.predict_ab(batch) - reference.predict_ab(batch)).max() * 110 <= MAX_AB_DIFF_LAB
    photo = skimage.data.coffee()[:45, :61]
    assert np.abs(colorizer.colorize(photo).astype(int) - reference.colorize(photo)).max() <= 1


def test_a_broken_file_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(inference.ColorganError, match="not a valid ONNX model"):
        inference.load_colorizer(broken)


def test_colorgan_export_writes_and_checks_it(generator, tmp_path, capsys):
    source = saving.save_generator(generator, tmp_path / "tiny.keras", "float32")
    status = cli.main(["colorgan", "export", "--format=onnx", f"--model={source}", f"--output={tmp_path / 'out'}",
                       "--name=tiny", "--parity_photos=2"])
    assert status == 0
    assert "against the source on 2 photos" in capsys.readouterr().out
    colorizer = inference.load_colorizer(tmp_path / "out" / "tiny.onnx")
    l = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    assert np.abs(colorizer.predict_ab(l) - generator(l, training=False).numpy()).max() * 110 <= MAX_AB_DIFF_LAB
