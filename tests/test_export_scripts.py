"""export/FORMAT.py in the checkout: each writes what `colorgan export --format=FORMAT` writes, refuses bad
flags in one line, and the folder is no package of the wheel."""
import configparser
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest
import setuptools

from colorgan import cli, inference
from conftest import REPO, vivid_tiny_generator

IMAGE_SIZE = 32
FORMATS = ("saved_model", "tflite", "keras", "onnx")
# The least work each format allows: one TFLite variant, two photos to check the file against.
QUICK = {"saved_model": [], "tflite": ["--variants=float32"], "keras": [], "onnx": []}
COMMON = ["--parity_photos=2", "--calibration_photos=2"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "generator.keras"
    vivid_tiny_generator(IMAGE_SIZE).save(path)
    return path


def written(image_format, output):
    """What the exporter wrote, in the form inference.load_colorizer takes."""
    return {"saved_model": output / "colorgan", "tflite": output / "colorgan_float32.tflite",
            "keras": output, "onnx": output / "colorgan.onnx"}[image_format]


def run_script(image_format, *args):
    """export/FORMAT.py in this process, as Python runs a file; returns its exit status."""
    argv, path = sys.argv, list(sys.path)
    sys.argv = [os.path.join(REPO, "export", f"{image_format}.py"), *map(str, args)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        return e.code
    finally:
        sys.argv, sys.path[:] = argv, path  # the script replaces sys.path[0]


@pytest.mark.parametrize("image_format", FORMATS)
def test_each_script_writes_what_colorgan_export_writes(image_format, model_file, tmp_path, capsys):
    if image_format == "onnx":
        pytest.importorskip("tf2onnx")
    by_command, by_script = (tmp_path / name / ("m.keras" if image_format == "keras" else "")
                             for name in ("command", "script"))
    flags = [f"--model={model_file}", *QUICK[image_format], *COMMON]
    assert cli.main(["colorgan", "export", f"--format={image_format}", f"--output={by_command}", *flags]) == 0
    if image_format == "onnx":
        # A fresh process, as a user runs it: Python puts export/ first on sys.path, where onnx.py would
        # be imported in place of the onnx package (tf2onnx imports it). In a user's shell, quiet too.
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        done = subprocess.run([sys.executable, os.path.join(REPO, "export", "onnx.py"), f"--output={by_script}",
                               *flags], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
        assert done.stdout.startswith(f"wrote {by_script / 'colorgan.onnx'}: ")
    else:
        assert run_script(image_format, f"--output={by_script}", *flags) == 0
    l = np.random.default_rng(0).uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    reference = inference.load_colorizer(str(written(image_format, by_command))).predict_ab(l)
    # The same conversion of the same weights, run by the same runtime: the same numbers, bit for bit.
    np.testing.assert_array_equal(inference.load_colorizer(str(written(image_format, by_script))).predict_ab(l),
                                  reference)
    assert np.abs(reference).max() > 0.1  # a model that colours, so that equal numbers mean something


def test_the_scripts_differ_only_in_their_format():
    """So that what the onnx.py test shows of its sys.path line holds for each of them."""
    texts = {f: pathlib.Path(REPO, "export", f"{f}.py").read_text() for f in FORMATS}
    assert len({text.replace(f"export/{f}.py", "export/F.py").replace(f"--format={f}", "--format=F")
                .replace(f'command_for("{f}")', 'command_for("F")') for f, text in texts.items()}) == 1


@pytest.mark.parametrize("args,message", [
    (["--format=onnx"], "flag --format=onnx: value should be one of <tflite>"),
    (["--variants=float32", "--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["photo.jpg"], "unexpected arguments ['photo.jpg']: pass everything as --flags"),
    (["--variants=float64"], "unknown --variants float64"),
])
def test_bad_flags_are_one_line_and_exit_status_2(args, message, model_file, tmp_path, capsys):
    status = run_script("tflite", f"--model={model_file}", f"--output={tmp_path}", *args)
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.startswith("error: ") and message in error, error
    assert "\n" not in error and not list(tmp_path.iterdir())


def test_the_export_folder_is_no_installed_package():
    options = configparser.ConfigParser()
    options.read(os.path.join(REPO, "setup.cfg"))
    include = options["options.packages.find"]["include"].split()
    packages = setuptools.find_namespace_packages(REPO, include=include)  # namespace: a folder of .py counts
    assert "colorgan" in packages and not [p for p in packages if p.split(".")[0] != "colorgan"], packages
    assert sorted(p.name for p in pathlib.Path(REPO, "export").glob("*.py")) == [f"{f}.py" for f in sorted(FORMATS)]
