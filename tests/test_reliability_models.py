"""Model files a user may hand any entry point: loaded in Keras's safe mode, and every bad one refused in
one line that names the file and what is wrong (colorize in-process, evaluate in a subprocess)."""
import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from colorgan import cli, models, saving
from colorgan.errors import ColorganError
from conftest import REPO, vivid_tiny_generator

SHIPPED = os.path.join(REPO, "models", "colorgan-lite0.keras")


def doubled(x):
    return keras.ops.concatenate([x, x], axis=-1)


def lambda_model(path, function):
    l = keras.Input((32, 32, 1))
    keras.Model(l, keras.layers.Lambda(function)(l)).save(path)  # (None, 32, 32, 1) -> (None, 32, 32, 2)


def wrong_shape_model(path, channels_in, channels_out):
    l = keras.Input((32, 32, channels_in))
    keras.Model(l, keras.layers.Conv2D(channels_out, 1)(l)).save(path)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    good = root / "good.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(good)
    # Keras stores a lambda's bytecode (and runs it when it loads the file, out of safe mode); this one
    # leaves a mark when it runs.
    marker = str(root / "the lambda ran")
    mark_and_double = eval(f"lambda x: __import__('keras').ops.concatenate([x, x], -1) if open({marker!r}, 'w')"
                           ".close() is None else x")  # the path is in its code: Keras mangles default arguments
    lambda_model(root / "lambda.keras", mark_and_double)
    os.remove(marker)  # building the model ran it once
    lambda_model(root / "function.keras", doubled)  # stored by name only
    wrong_shape_model(root / "rgb input.keras", 3, 2)
    wrong_shape_model(root / "three outputs.keras", 1, 3)
    (root / "truncated.keras").write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    (root / "not a zip.keras").write_text("<html>404</html>")
    (root / "folder.keras").mkdir()
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(root / "damaged weights.keras", "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name) if not name.endswith(".h5") else b"junk")
    return root


# What each bad file is, in the words of its one-line error.
BAD = {"lambda.keras": "holds a Lambda layer, code that colorgan never runs",
       "function.keras": "needs the function 'doubled', which is neither Keras's nor colorgan's",
       "rgb input.keras": r"is not a colorizer: its inputs and outputs are \(None, 32, 32, 3\) and \(None, 32, 32, 2\)",
       "three outputs.keras": r"is not a colorizer: .* and \(None, 32, 32, 3\)",
       "truncated.keras": "is not a Keras model: it is not a zip archive",
       "not a zip.keras": "is not a Keras model: it is not a zip archive",
       "folder.keras": "is a folder, not a .keras file",
       "damaged weights.keras": "cannot be loaded as a Keras model"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_colorize_refuses_a_bad_model_file_in_one_line(bad_models, tmp_path, capsys, name):
    Image.new("L", (8, 8)).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exit_info:
        cli.colorize_main(["colorize", "--noprogress", f"--model={bad_models / name}", f"--output_dir={tmp_path / 'out'}",
                           str(tmp_path / "photo.png")])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in error and "Traceback" not in error
    assert error.startswith(f"error: model file {bad_models / name}"), error
    assert re.search(BAD[name], error), error


def test_evaluate_refuses_them_in_one_line_too(bad_models):
    for name in ("lambda.keras", "truncated.keras"):
        done = subprocess.run([sys.executable, "-m", "colorgan", "evaluate", f"--model={bad_models / name}",
                               "--data=samples", "--nofid"], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1].startswith(f"error: model file {bad_models / name}")
        assert "Traceback" not in done.stderr


def test_the_lambda_never_runs(bad_models):
    with pytest.raises(ColorganError, match="Lambda"):
        saving.load_generator(str(bad_models / "lambda.keras"))
    assert not (bad_models / "the lambda ran").exists()
    keras.saving.load_model(bad_models / "lambda.keras", safe_mode=False)  # what safe mode prevents
    assert (bad_models / "the lambda ran").exists()


def test_the_shipped_model_loads_in_safe_mode():
    model = keras.saving.load_model(SHIPPED, compile=False, safe_mode=True)  # colorgan.models registered it
    assert model.input_shape == (None, 128, 128, 1) and model.output_shape == (None, 128, 128, 2)
    generator, image_size = saving.load_generator()
    assert image_size == 128 and {w.dtype for w in generator.weights} == {"float32"}


def policies(path):
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                found.add(node["config"]["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(config))
    return found


def test_float16_files_store_float32_layers_so_a_plain_keras_load_computes_in_float32(tmp_path):
    generator = vivid_tiny_generator(32)
    half = saving.save_generator(generator, tmp_path / "half.keras", weights_dtype="float16")
    assert policies(half) == {"float32"}
    plain = keras.saving.load_model(half, compile=False, safe_mode=True)
    assert {w.dtype for w in plain.weights} == {"float32"}
    l = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    assert np.abs(plain(l).numpy() - generator(l).numpy()).max() * 110 < 0.5  # float16 rounding only
    loaded, _ = saving.load_generator(str(half))
    np.testing.assert_allclose(loaded(l).numpy(), plain(l).numpy(), atol=1e-6)


def test_a_mixed_precision_generator_is_saved_with_float32_layers(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        generator = models.build_generator("unet", image_size=32, base_filters=8, depth=5)
    finally:
        keras.config.set_dtype_policy("float32")
    path = saving.save_generator(generator, tmp_path / "mixed.keras")
    assert policies(path) == {"float32"}


def test_the_shipped_file_stores_float32_layers():
    """A plain Keras load of the shipped model (after its layers are registered) computes in float32."""
    import colorgan.models  # noqa: F401  registers GrayToEncoderRGB
    assert policies(saving.DEFAULT_GENERATOR) == {"float32"}
    model = keras.saving.load_model(saving.DEFAULT_GENERATOR, compile=False, safe_mode=True)
    assert {layer.dtype_policy.compute_dtype for layer in model.layers} == {"float32"}
