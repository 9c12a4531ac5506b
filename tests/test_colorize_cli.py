"""The `colorize` command: folders, globs, mixed good and bad files, never overwriting inputs, exit status."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorgan import cli, export, models, saving

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    generator = models.build_generator("unet", image_size=IMAGE_SIZE, base_filters=8, depth=5)
    path = tmp_path_factory.mktemp("model") / "generator.keras"
    generator.save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    """A folder of real photos at odd sizes, in subfolders, with broken files and a non-image among them."""
    root = tmp_path / "photos"
    (root / "trip" / "day2").mkdir(parents=True)
    Image.fromarray(skimage.data.coffee()[:333, :517]).save(root / "coffee.jpg", quality=90)
    Image.fromarray(skimage.data.chelsea()[:101, :77]).save(root / "trip" / "cat.png")
    Image.fromarray(skimage.data.camera()[:64, :48]).save(root / "trip" / "day2" / "gray.png")  # mode L
    Image.fromarray(skimage.data.astronaut()[:101, :77]).save(root / "trip" / "day2" / "same_size.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "trip" / "truncated.png").write_bytes((root / "trip" / "cat.png").read_bytes()[:200])
    (root / "notes.txt").write_text("not a photo, and not named like one: ignored")
    return root


def colorize(*args):
    return cli.colorize_main(["colorize", "--noprogress", *map(str, args)])


def test_folder_with_good_and_bad_files(photos, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    status = colorize("--model", model_file, "--output_dir", out, photos)
    captured = capsys.readouterr()
    assert status == 1  # something failed
    assert "done 4, skipped 0, failed 2" in captured.out
    assert "broken.jpg" in captured.err and "truncated.png" in captured.err
    assert "Traceback" not in captured.err
    # The output tree mirrors the input tree, every photo at its own size.
    # The default keeps each photo's format: a JPEG comes out a JPEG, a PNG a PNG.
    for source, target in [("coffee.jpg", "coffee.jpg"), ("trip/cat.png", "trip/cat.png"),
                           ("trip/day2/gray.png", "trip/day2/gray.png"),
                           ("trip/day2/same_size.jpg", "trip/day2/same_size.jpg")]:
        with Image.open(photos / source) as original, Image.open(out / target) as colorized:
            assert colorized.size == original.size and colorized.mode == "RGB", target
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        ".colorgan-outputs", "cat.png", "coffee.jpg", "gray.png", "same_size.jpg"]  # the list of what it wrote

    # A second run leaves finished photos alone unless asked.
    status = colorize("--model", model_file, "--output_dir", out, photos)
    assert status == 1 and "done 0, skipped 4, failed 2" in capsys.readouterr().out


def test_never_writes_over_inputs_unless_asked(photos, model_file, capsys):
    cat = photos / "trip" / "cat.png"
    before = cat.read_bytes()
    status = colorize("--model", model_file, "--output_dir", photos / "trip", "--format", "same", cat)
    captured = capsys.readouterr()
    assert status == 0 and "done 0, skipped 1, failed 0" in captured.out
    assert "is the input itself" in captured.err and cat.read_bytes() == before
    status = colorize("--model", model_file, "--output_dir", photos / "trip", "--format", "same", "--overwrite", cat)
    assert status == 0 and "done 1, skipped 0, failed 0" in capsys.readouterr().out
    assert cat.read_bytes() != before


def test_globs_files_and_missing_inputs(photos, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    status = colorize("--model", model_file, "--output_dir", out, "--format", "jpg", "--batch_size", "2",
                      f"{photos}/**/*.png", photos / "coffee.jpg", photos / "nowhere.jpg")
    captured = capsys.readouterr()
    # The glob matches the good and the truncated PNG; nowhere.jpg does not exist.
    assert status == 1 and "done 3, skipped 0, failed 2" in captured.out
    assert "nowhere.jpg: no such file" in captured.err
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")} == {
        "coffee.jpg", "trip/cat.jpg", "trip/day2/gray.jpg"}


def test_user_errors_are_one_line(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", tmp_path / "no_such_model", photos)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: no model at") and "\n" not in error
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", tmp_path / "m.keras")
    assert exit_info.value.code == 2 and "no inputs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        colorize("--saturation=-1", photos)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith("error: --saturation must be 0") and "\n" not in error


def test_console_script_with_a_tflite_model(model_file, tmp_path):
    script = pathlib.Path(sys.executable).parent / "colorize"
    if not script.exists():
        pytest.skip("the colorize console script is not installed (pip install -e .)")
    generator, image_size = saving.load_generator(str(model_file))
    tflite = export.write_tflite(export.convert_tflite(generator, image_size, "float16"),
                                 tmp_path / "colorgan_float16.tflite", image_size, "float16")
    photo = tmp_path / "in" / "odd.png"
    photo.parent.mkdir()
    Image.fromarray(skimage.data.coffee()[:1, :1]).save(photo)  # 1 x 1: the smallest photo there is
    result = subprocess.run([str(script), "--model", str(tflite), "--output_dir", str(tmp_path / "out"),
                             str(photo.parent)], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "done 1, skipped 0, failed 0" in result.stdout
    with Image.open(tmp_path / "out" / "odd.png") as colorized:
        assert colorized.size == (1, 1)
    assert np.asarray(Image.open(tmp_path / "out" / "odd.png")).shape == (1, 1, 3)


@pytest.mark.parametrize("where", ["the input folder", "a parent of it"])
def test_output_dir_may_be_the_input_folder_or_above_it(photos, model_file, capsys, where):
    inputs = photos / "trip" / "day2"  # gray.png and same_size.jpg
    output_dir = inputs if where == "the input folder" else inputs.parent
    status = colorize("--model", model_file, "--output_dir", output_dir, "--format", "jpg", inputs)
    captured = capsys.readouterr()
    # It used to find nothing, since every input lies under the output folder: "done 0", status 0.
    if where == "the input folder":  # same_size.jpg would replace itself
        assert status == 0 and "done 1, skipped 1, failed 0" in captured.out
        assert "whose output is the input itself" in captured.err
    else:
        assert status == 0 and "done 2, skipped 0, failed 0" in captured.out
    assert (output_dir / "gray.jpg").is_file()
    # A rerun colours nothing it wrote itself.
    status = colorize("--model", model_file, "--output_dir", output_dir, "--format", "jpg", inputs)
    assert status == 0 and "done 0, skipped 2, failed 0" in capsys.readouterr().out


def test_its_own_outputs_in_the_input_folder_are_never_coloured_again(photos, model_file, capsys):
    trip = photos / "trip"
    # cat.png and day2/gray.png are coloured, day2/same_size.jpg would replace itself, truncated.png fails.
    assert colorize("--model", model_file, "--output_dir", trip, "--format", "jpg", trip) == 1
    assert "done 2, skipped 1, failed 1" in capsys.readouterr().out
    written = (trip / ".colorgan-outputs").read_text().splitlines()
    assert sorted(written) == ['"cat.jpg"', '"day2/gray.jpg"']
    # Were cat.jpg an input, its output cat.png would clash with cat.png's: "also the output of".
    status = colorize("--model", model_file, "--output_dir", trip, "--format", "png", trip)
    captured = capsys.readouterr()
    assert status == 0 and "also the output of" not in captured.err
    assert "done 1, skipped 3, failed 0" in captured.out  # same_size.jpg; the PNGs would replace themselves


def test_a_rerun_says_skipped_once_not_once_a_photo(photos, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    colorize("--model", model_file, "--output_dir", out, photos)
    capsys.readouterr()
    colorize("--model", model_file, "--output_dir", out, photos)
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("skipped")] == [
        f"skipped 4 photos whose outputs exist in {out}; pass --overwrite to replace them"]


def test_an_output_folder_that_cannot_be_written_fails_before_the_model_loads(photos, model_file, monkeypatch, capsys):
    from colorgan import inference
    monkeypatch.setattr(inference, "load_colorizer", lambda *a: pytest.fail("the model was loaded"))
    # As root, permissions do not stop writes; /proc takes no files whoever asks.
    unwritable = "/proc/colorgan-out" if os.geteuid() == 0 else photos.parent / "locked"
    if os.geteuid() != 0:
        unwritable.mkdir(mode=0o555)
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", model_file, "--output_dir", unwritable, photos)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith(f"error: --output_dir={unwritable}: cannot write in ")
    assert "\n" not in error


def test_a_name_that_starts_with_a_dash(photos, model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(photos)
    (photos / "coffee.jpg").rename(photos / "-weird.jpg")
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", model_file, "--output_dir", tmp_path / "out", "-weird.jpg")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "put -- before a file name that starts with a dash" in error
    assert colorize("--model", model_file, "--output_dir", tmp_path / "out", "--", "-weird.jpg") == 0
    assert (tmp_path / "out" / "-weird.jpg").is_file()


def test_verbosity_is_read_before_tensorflow_however_it_is_given(tmp_path):
    """The start-up lines are shown or hidden before the real parse, so --verbosity must be found there
    in each of absl's forms: =N, a separate value, and inside a flagfile (the last one given wins)."""
    flagfile = tmp_path / "run.cfg"
    flagfile.write_text("--data=folder:photos\n--verbosity=2\n")
    assert cli.requested_verbosity(["colorgan colorize", "--verbosity", "2", "photo.jpg"]) == 2
    assert cli.requested_verbosity(["colorgan train", "--unknown=1", "--verbosity=1"]) == 1
    assert cli.requested_verbosity(["colorgan train", f"--flagfile={flagfile}"]) == 2
    assert cli.requested_verbosity(["colorgan train", f"--flagfile={flagfile}", "--verbosity=0"]) == 0
    # A malformed value or a missing flagfile is left for the real parse to report.
    assert cli.requested_verbosity(["colorgan train", "--verbosity=loud"]) == 0
    assert cli.requested_verbosity(["colorgan train", f"--flagfile={tmp_path / 'none.cfg'}"]) == 0
