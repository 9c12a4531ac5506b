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


def test_a_photo_coloured_into_its_own_folder_goes_beside_it_and_never_replaces_it(photos, model_file, capsys):
    cat = photos / "trip" / "cat.png"
    before = cat.read_bytes()
    # It used to colour nothing ("skipped 1 photo whose output is the input itself") and exit 0.
    status = colorize("--model", model_file, "--output_dir", photos / "trip", "--format", "same", cat)
    captured = capsys.readouterr()
    assert status == 0 and "done 1, skipped 0, failed 0" in captured.out
    assert f"writing it beside the inputs as NAME_color.EXT ({cat} -> {photos / 'trip' / 'cat_color.png'})" in captured.err
    assert cat.read_bytes() == before
    with Image.open(cat) as original, Image.open(photos / "trip" / "cat_color.png") as colorized:
        assert colorized.size == original.size and colorized.mode == "RGB"
    # --overwrite replaces the earlier output, still not the input.
    written = (photos / "trip" / "cat_color.png").stat().st_mtime_ns
    status = colorize("--model", model_file, "--output_dir", photos / "trip", "--format", "same", "--overwrite", cat)
    assert status == 0 and "done 1, skipped 0, failed 0" in capsys.readouterr().out
    assert cat.read_bytes() == before and (photos / "trip" / "cat_color.png").stat().st_mtime_ns != written


def test_an_output_that_would_replace_another_input_never_does(photos, model_file, capsys):
    day2 = photos / "trip" / "day2"
    Image.fromarray(skimage.data.coffee()[:40, :30]).save(day2 / "gray.jpg")  # where gray.png's JPEG would go
    before = {p.name: p.read_bytes() for p in day2.iterdir()}
    status = colorize("--model", model_file, "--output_dir", day2, "--format", "jpg", day2)
    captured = capsys.readouterr()
    # gray.jpg and same_size.jpg go beside themselves; gray.png's output would be gray.jpg, then
    # gray_color.jpg, which is gray.jpg's: it fails, and says how to have both.
    assert status == 1 and "done 2, skipped 0, failed 1" in captured.out
    assert f"failed: {day2 / 'gray.png'}: its output {day2 / 'gray_color.jpg'} is also the output of" in captured.err
    assert {p.name: p.read_bytes() for p in day2.iterdir() if p.name in before} == before
    assert {"gray_color.jpg", "same_size_color.jpg"} <= {p.name for p in day2.iterdir()}


def test_nothing_to_colour_is_an_error_not_a_success(photos, model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", model_file, tmp_path / "empty")
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith(f"error: found no photos to colour in {tmp_path / 'empty'}")
    assert "\n" not in error
    # A folder of nothing but colorize's own outputs: there is nothing to do either, and it says why.
    out = tmp_path / "out"
    assert colorize("--model", model_file, "--output_dir", out, photos / "trip" / "day2") == 0
    with pytest.raises(SystemExit) as exit_info:
        colorize("--model", model_file, "--output_dir", out, out)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "all 2 photos there are colorize's own outputs" in error


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


def test_the_installed_command_prints_no_tensorflow_start_up_lines(model_file, tmp_path):
    """A fresh process of the installed `colorgan`, without the TF_CPP_MIN_LOG_LEVEL that `make test`
    sets: its stderr is empty, and --verbosity=2 shows the lines it hides (so they exist to be hidden)."""
    script = pathlib.Path(sys.executable).parent / "colorgan"
    if not script.exists():
        pytest.skip("the colorgan console script is not installed (pip install -e .)")
    photo = tmp_path / "photo.png"
    Image.fromarray(skimage.data.chelsea()[:40, :50]).save(photo)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def run(*flags):
        return subprocess.run([str(script), "colorize", "--model", str(model_file), "--noprogress",
                               "--overwrite", "--output_dir", str(tmp_path / "out"), *flags, str(photo)],
                              capture_output=True, text=True, env=env, timeout=300)

    quiet = run()
    assert quiet.returncode == 0 and quiet.stdout.strip() == "done 1, skipped 0, failed 0", quiet
    assert quiet.stderr == ""
    loud = run("--verbosity=2")
    assert loud.returncode == 0, loud.stderr[-2000:]
    # TensorFlow's C++ lines: absl's "I0000 00:00:..." format, or its notice before InitializeLog.
    assert any(line.startswith(("I0000", "W0000", "E0000")) or "InitializeLog" in line
               for line in loud.stderr.splitlines()), loud.stderr


@pytest.mark.parametrize("where", ["the input folder", "a parent of it"])
def test_output_dir_may_be_the_input_folder_or_above_it(photos, model_file, capsys, where):
    inputs = photos / "trip" / "day2"  # gray.png and same_size.jpg
    output_dir = inputs if where == "the input folder" else inputs.parent
    status = colorize("--model", model_file, "--output_dir", output_dir, "--format", "jpg", inputs)
    captured = capsys.readouterr()
    # It used to find nothing, since every input lies under the output folder: "done 0", status 0.
    assert status == 0 and "done 2, skipped 0, failed 0" in captured.out
    if where == "the input folder":  # same_size.jpg would replace itself
        assert "writing it beside the inputs as NAME_color.EXT" in captured.err
        assert (output_dir / "same_size_color.jpg").is_file()
    assert (output_dir / "gray.jpg").is_file()
    # A rerun colours nothing it wrote itself.
    status = colorize("--model", model_file, "--output_dir", output_dir, "--format", "jpg", inputs)
    assert status == 0 and "done 0, skipped 2, failed 0" in capsys.readouterr().out


def test_its_own_outputs_in_the_input_folder_are_never_coloured_again(photos, model_file, capsys):
    trip = photos / "trip"
    # cat.png and day2/gray.png are coloured, day2/same_size.jpg beside itself, truncated.png fails.
    assert colorize("--model", model_file, "--output_dir", trip, "--format", "jpg", trip) == 1
    assert "done 3, skipped 0, failed 1" in capsys.readouterr().out
    written = (trip / ".colorgan-outputs").read_text().splitlines()
    assert sorted(written) == ['"cat.jpg"', '"day2/gray.jpg"', '"day2/same_size_color.jpg"']
    # Were cat.jpg an input, its output cat.png would clash with cat.png's: "also the output of". The
    # PNGs go beside themselves, same_size.jpg becomes same_size.png; truncated.png fails again.
    status = colorize("--model", model_file, "--output_dir", trip, "--format", "png", trip)
    captured = capsys.readouterr()
    assert status == 1 and "also the output of" not in captured.err
    assert "done 3, skipped 0, failed 1" in captured.out
    assert {"cat_color.png", "gray_color.png", "same_size.png"} <= {p.name for p in trip.rglob("*.png")}


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
