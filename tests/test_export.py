"""SavedModel signatures (also through saved_model_cli and TF Serving's REST JSON), its warm-up request,
EXIF in the graph, and TFLite parity per variant."""
import base64
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import skimage.color
import skimage.data
import tensorflow as tf
from PIL import Image, ImageOps

from colorgan import data, export, inference, photos
from conftest import vivid_tiny_generator

IMAGE_SIZE = 32
SHARED_VAL = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "val"
SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"


@pytest.fixture(scope="module")
def generator():
    return vivid_tiny_generator(IMAGE_SIZE)


@pytest.fixture(scope="module")
def reference(generator):
    return inference.KerasColorizer(generator)


@pytest.fixture(scope="module")
def exported(generator, tmp_path_factory):
    return export.export_saved_model(generator, IMAGE_SIZE, tmp_path_factory.mktemp("serving"), "colorgan",
                                     source="tiny test unet")


@pytest.fixture(scope="module")
def jpeg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "coffee_odd.jpg"
    Image.fromarray(skimage.data.coffee()[:333, :517]).save(path, quality=92)
    return path


def test_serving_layout_and_versions(exported, tmp_path):
    assert exported.name == "1" and (exported / "saved_model.pb").is_file()
    assert [p.name for p in exported.parent.iterdir()] == ["1"]  # no temporary folder left behind
    meta = json.loads((exported / inference.SAVED_MODEL_METADATA).read_text())
    assert meta["image_size"] == IMAGE_SIZE and meta["source"] == "tiny test unet"
    # The next export becomes one above the highest version, which is also what `OUT/NAME` loads.
    for version in ("1", "7", ".8.tmp"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").touch()
    assert export.next_version(tmp_path) == 8
    assert inference.saved_model_version_dir(tmp_path) == tmp_path / "7"


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def test_predict_ab_and_colorize_tensor_signatures(loaded, reference):
    assert set(loaded.signatures) == {"serving_default", "colorize_saturated", "colorize_tensor", "predict_ab"}
    l = np.random.default_rng(0).uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.signatures["predict_ab"](l=tf.constant(l))["ab"].numpy(),
                               reference.predict_ab(l), atol=1e-5)
    photo = skimage.data.chelsea()[:333, :451]
    for image in (photo, photo[..., :1], np.zeros((1, 1, 3), np.uint8)):
        output = loaded.signatures["colorize_tensor"](image=tf.constant(image))["image"].numpy()
        assert output.shape == (*image.shape[:2], 3) and output.dtype == np.uint8
        np.testing.assert_array_equal(output, reference.colorize(image))


def test_load_colorizer_reads_the_saved_model(exported, reference):
    assert inference.saved_model_version_dir(exported) == exported
    colorizer = inference.load_colorizer(exported.parent)  # OUT/NAME: the highest version
    assert isinstance(colorizer, inference.SavedModelColorizer) and colorizer.image_size == IMAGE_SIZE
    l = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    np.testing.assert_allclose(colorizer.predict_ab(l), reference.predict_ab(l), atol=1e-5)


def test_saved_model_cli_show_lists_the_four_signatures(exported):
    shown = subprocess.run([str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(exported)],
                           capture_output=True, text=True, check=True).stdout
    for signature in ("serving_default", "colorize_saturated", "colorize_tensor", "predict_ab"):
        assert f"signature_def['{signature}']" in shown
    assert "DT_STRING" in shown and "DT_UINT8" in shown
    assert "outputs['images_bytes'] tensor_info" in shown  # the name TF Serving's REST base64-encodes


def test_saved_model_cli_run_colorizes_a_jpeg(exported, jpeg_file, reference, tmp_path):
    inputs = tmp_path / "images.npy"
    np.save(inputs, np.array([jpeg_file.read_bytes()], dtype=object), allow_pickle=True)
    outdir = tmp_path / "out"
    subprocess.run([str(SAVED_MODEL_CLI), "run", "--dir", str(exported), "--tag_set", "serve",
                    "--signature_def", "serving_default", "--inputs", f"images={inputs}", "--outdir", str(outdir)],
                   capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    (png,) = np.load(outdir / "images_bytes.npy", allow_pickle=True)
    colorized = np.asarray(Image.open(io.BytesIO(png)))
    assert colorized.shape == (333, 517, 3)
    # TF's and PIL's JPEG decoders differ by a few levels; the pictures agree otherwise.
    expected = reference.colorize(photos.read_photo(jpeg_file).pixels)
    assert np.abs(colorized.astype(int) - expected).mean() < 1.0


def test_colorize_saturated_scales_the_colour_and_keeps_the_lightness(loaded, jpeg_file, reference):
    contents = tf.constant([jpeg_file.read_bytes()])
    saturated = lambda s: np.asarray(Image.open(io.BytesIO(loaded.signatures["colorize_saturated"](
        images=contents, saturation=tf.constant(s, tf.float32))["images_bytes"].numpy()[0])))
    gray, own, vivid = (saturated(strength) for strength in (0.0, 1.0, 2.5))
    (plain,) = loaded.signatures["serving_default"](images=contents)["images_bytes"].numpy()
    assert np.array_equal(own, np.asarray(Image.open(io.BytesIO(plain))))
    pixels = photos.read_photo(jpeg_file).pixels
    for strength, output in ((0.0, gray), (2.5, vivid)):
        # Against the Python path's colour strength (TF's and PIL's JPEG decoders differ by a few levels).
        expected = inference.SaturatedColorizer(reference, strength).colorize(pixels)
        assert output.shape == (333, 517, 3) and np.abs(output.astype(int) - expected).mean() < 1.0
    assert np.abs(gray.astype(int) - gray[..., :1]).max() <= 1  # a = b = 0: every channel the same
    lightness = lambda rgb: skimage.color.rgb2lab(rgb)[..., 0]
    assert np.abs(lightness(vivid) - lightness(gray)).mean() < 1.0  # only the colour moved ...
    chroma = lambda rgb: np.hypot(*np.moveaxis(skimage.color.rgb2lab(rgb)[..., 1:], -1, 0)).mean()
    assert chroma(vivid) > 1.8 * chroma(own)  # ... and it moved a lot
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(tf.errors.InvalidArgumentError, match="saturation must be a finite number"):
            saturated(bad)


def tf_serving_rest(signatures, body):
    """TF Serving's REST :predict as its tensorflow_serving/util/json_tensor.cc does it, for signatures of
    one output: the request's "signature_name" (default serving_default) picks the signature; {"b64": ...}
    values are base64-decoded into string tensors, other values become tensors of the input's dtype (the
    columnar "inputs" form names each input and may hold a scalar); a string output goes back
    base64-encoded only when its name ends in "_bytes", and as a JSON string otherwise (which raw PNG bytes
    are not: the decode below raises, as a REST client would choke)."""
    request = json.loads(body)
    signature = signatures[request.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    values = request["instances"] if "instances" in request else request["inputs"]
    if not isinstance(values, dict):  # the row form, or the columnar form of a one-input signature
        (input_name,) = specs
        values = {input_name: values}

    def tensor(name, value):
        if specs[name].dtype == tf.string:
            return tf.constant([base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in value])
        return tf.constant(value, specs[name].dtype)

    ((name, output),) = signature(**{k: tensor(k, v) for k, v in values.items()}).items()
    encode = ((lambda v: {"b64": base64.b64encode(v).decode()}) if name.endswith("_bytes")
              else (lambda v: v.decode("utf-8")))
    return json.dumps({"predictions" if "instances" in request else "outputs": [encode(v) for v in output.numpy()]})


@pytest.mark.parametrize("form", ["instances", "inputs"])
def test_a_tf_serving_rest_client_gets_a_base64_png_back(form, loaded, jpeg_file, reference):
    # Exactly the JSON a REST client sends (README: "Serving with TF Serving"), in either request form.
    b64 = base64.b64encode(jpeg_file.read_bytes()).decode("ascii")
    body = json.dumps({"instances": [{"b64": b64}]} if form == "instances" else {"inputs": {"images": [{"b64": b64}]}})
    response = json.loads(tf_serving_rest(loaded.signatures, body))
    (prediction,) = response["predictions" if form == "instances" else "outputs"]
    colorized = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["b64"]))))
    assert colorized.shape == (333, 517, 3)
    expected = reference.colorize(photos.read_photo(jpeg_file).pixels)
    assert np.abs(colorized.astype(int) - expected).mean() < 1.0


def test_a_tf_serving_rest_client_can_ask_for_more_colour(loaded, jpeg_file, reference):
    # The README's request for colorize_saturated: the columnar form, with the strength as a scalar.
    b64 = base64.b64encode(jpeg_file.read_bytes()).decode("ascii")
    body = json.dumps({"signature_name": "colorize_saturated", "inputs": {"images": [{"b64": b64}], "saturation": 1.5}})
    (prediction,) = json.loads(tf_serving_rest(loaded.signatures, body))["outputs"]
    colorized = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["b64"]))))
    expected = inference.SaturatedColorizer(reference, 1.5).colorize(photos.read_photo(jpeg_file).pixels)
    assert colorized.shape == (333, 517, 3) and np.abs(colorized.astype(int) - expected).mean() < 1.0


def test_the_warmup_request_is_a_prediction_log_for_serving_default(exported, loaded):
    prediction_log_pb2 = pytest.importorskip(
        "tensorflow_serving.apis.prediction_log_pb2", reason="needs tensorflow-serving-api (the test extra)")
    (record,) = tf.data.TFRecordDataset(str(exported / export.WARMUP_FILE)).as_numpy_iterator()
    log = prediction_log_pb2.PredictionLog.FromString(record)
    assert log.SerializeToString() == record  # every byte accounted for by the real proto classes
    request = log.predict_log.request
    assert request.model_spec.name == "colorgan" and request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["images"]
    images = tf.make_ndarray(request.inputs["images"])
    (png,) = loaded.signatures["serving_default"](images=tf.constant(images))["images_bytes"].numpy()
    assert Image.open(io.BytesIO(png)).size == (64, 48)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_in_the_graph_matches_pil(orientation):
    stored = skimage.data.astronaut()[:24, :40]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif.tobytes())
    contents = buffer.getvalue()
    assert int(photos.exif_orientation(tf.constant(contents))) == orientation
    decoded = tf.io.decode_jpeg(contents, channels=3)
    ours = photos.apply_exif_orientation(decoded, photos.exif_orientation(tf.constant(contents))).numpy()
    # PIL's own transpose of the very same pixels is the reference.
    image = Image.fromarray(decoded.numpy())
    image.getexif()[0x0112] = orientation
    np.testing.assert_array_equal(ours, np.asarray(ImageOps.exif_transpose(image)))


def test_exif_orientation_defaults_to_upright():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "PNG")
    assert int(photos.exif_orientation(tf.constant(buffer.getvalue()))) == 1
    assert int(photos.exif_orientation(tf.constant(b""))) == 1


def real_photo_l():
    """Normalised L of real photos: the packages' photos, plus the shared validation set when present."""
    l = [x.numpy() for x, _ in data.make_dataset("samples", "all", IMAGE_SIZE, 1, training=False)]
    if SHARED_VAL.is_dir():
        shared = data.make_dataset(f"folder:{SHARED_VAL}", "all", IMAGE_SIZE, 1, training=False)
        l += [x.numpy() for x, _ in shared.take(8)]
    return l


@pytest.fixture(scope="module")
def parity_l():
    return real_photo_l()


@pytest.fixture(scope="module")
def calibration_l():
    return export.l_batches("samples", "train", IMAGE_SIZE, 8)


# Floors from the issue: 40 dB for float16, 30 dB for int8; float32 must be exact to float precision.
PARITY = {"float32": (0.01, 80.0), "float16": (2.0, 40.0), "int8": (15.0, 30.0)}


@pytest.mark.parametrize("variant", ["float32", "float16", "int8"])
def test_tflite_parity(variant, generator, reference, parity_l, calibration_l, tmp_path):
    path = export.write_tflite(export.convert_tflite(generator, IMAGE_SIZE, variant, calibration_l),
                               tmp_path / f"colorgan_{variant}.tflite", IMAGE_SIZE, variant, source="test")
    colorizer = inference.load_colorizer(path)
    assert isinstance(colorizer, inference.TFLiteColorizer) and colorizer.image_size == IMAGE_SIZE
    check = export.parity(reference, colorizer, parity_l)
    print(f"{variant}: {check} on {len(parity_l)} real photos")
    max_ab_diff, psnr_floor = PARITY[variant]
    assert check["max_ab_diff"] < max_ab_diff and check["mean_ab_diff"] < max_ab_diff / 5
    assert check["psnr_db"] >= psnr_floor
    meta = inference.read_metadata(path)
    assert meta["variant"] == variant and meta["image_size"] == IMAGE_SIZE and meta["source"] == "test"
    assert "L/50 - 1" in meta["normalisation"]["input"]
    if variant == "int8":
        assert meta["quantisation"]["input"]["scale"] > 0 and meta["quantisation"]["output"]["dtype"] == "int8"
    # The full-resolution path runs on the phone model too.
    assert colorizer.colorize(skimage.data.coffee()[:33, :17]).shape == (33, 17, 3)


def test_dynamic_int8_comes_with_a_warning(generator, caplog):
    with caplog.at_level("WARNING"):
        flatbuffer = export.convert_tflite(generator, IMAGE_SIZE, "dynamic_int8")
    assert "slower than float32" in caplog.text and len(flatbuffer) > 0


def test_int8_needs_calibration_photos(generator):
    with pytest.raises(inference.ColorganError, match="pass --data"):
        export.convert_tflite(generator, IMAGE_SIZE, "int8")
