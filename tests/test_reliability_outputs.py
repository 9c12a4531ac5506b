"""Outputs that cannot be written, found before any work, and files that are never replaced unasked.

Every command that writes (train, evaluate, export, video, colorize) checks its output path with
colorgan.outputs.check before it loads a model or reads an input: a path through a file, in /proc, or
onto a folder where a file goes fails with one line and exit status 2. The model named in these runs
does not exist, so an error about the output proves the output was checked first.
"""
import json
import os
import time

import pytest

from colorgan import outputs
from colorgan.errors import ColorganError
from conftest import run_cli

NO_MODEL = "/nonexistent/model.keras"




@pytest.fixture
def blocker(tmp_path):
    """A plain file, which the outputs below try to use as a folder."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def commands(kind, tmp_path, blocker):
    """Each writing command with an output of the given kind: (argv, the flag it names)."""
    through = {"through a file": lambda name: blocker / name, "in /proc": lambda name: f"/proc/{name}",
               "onto a folder": None}[kind]
    if kind == "onto a folder":  # an existing folder where a file goes (or, for folders, a file)
        folder = tmp_path / "film.mp4"
        folder.mkdir()
        keras_folder = tmp_path / "mine.keras"
        keras_folder.mkdir()
        return [(["video", "/nonexistent/in.mp4", f"--output={folder}", f"--model={NO_MODEL}"], "--output"),
                (["export", "--format=keras", f"--output={keras_folder}", f"--model={NO_MODEL}"], "--output"),
                (["train", "--data=samples", f"--logdir={blocker}"], "--logdir"),
                (["evaluate", "--data=samples", f"--out_dir={blocker}", f"--model={NO_MODEL}"], "--out_dir"),
                (["export", "--format=tflite", f"--output={blocker}", f"--model={NO_MODEL}"], "--output")]
    return [(["train", "--data=samples", f"--logdir={through('run')}"], "--logdir"),
            (["evaluate", "--data=samples", f"--out_dir={through('eval')}", f"--model={NO_MODEL}"], "--out_dir"),
            (["export", "--format=keras", f"--output={through('mine.keras')}", f"--model={NO_MODEL}"], "--output"),
            (["export", "--format=saved_model", f"--output={through('exported')}", f"--model={NO_MODEL}"],
             "--output"),
            (["export", "--format=tflite", f"--output={through('tflite')}", f"--model={NO_MODEL}"], "--output"),
            (["video", "/nonexistent/in.mp4", f"--output={through('film.mp4')}", f"--model={NO_MODEL}"], "--output")]


@pytest.mark.parametrize("kind", ["through a file", "in /proc", "onto a folder"])
def test_every_command_checks_its_output_before_any_work(kind, tmp_path, blocker, capsys):
    for argv, flag in commands(kind, tmp_path, blocker):
        started = time.monotonic()
        status, lines = run_cli(capsys, *argv)
        assert status == 2, (argv, lines)
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag}="), (argv, lines)
        assert "model" not in lines[0] and "Traceback" not in lines[0], lines  # the model never loaded
        assert time.monotonic() - started < 20, argv
    # Nothing was made on the way: no run folder, no reports, no probe files left.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a-file"] + (["film.mp4", "mine.keras"] if kind == "onto a folder" else []))
    assert blocker.read_text() == "not a folder"


def test_colorize_names_the_file_in_the_way(tmp_path, blocker, sample_photos, capsys):
    status, lines = run_cli(capsys, "colorize", f"--output_dir={blocker / 'out'}", f"--model={NO_MODEL}",
                        sample_photos[0])
    assert status == 2 and lines == [f"error: --output_dir={blocker / 'out'}: {blocker} is a file, not a "
                                     "folder, so nothing can be written below it; pass another --output_dir"]


def test_the_check_itself(tmp_path, blocker):
    """Known answers for each kind of path, files and folders."""
    def refusal(*args, **kwargs):
        with pytest.raises(ColorganError) as caught:
            outputs.check(*args, **kwargs)
        return str(caught.value)

    assert "a-file is a file, not a folder" in refusal("--output", blocker / "deep" / "x.mp4")
    assert "already exists; pass --overwrite" in refusal("--output", blocker)
    assert outputs.check("--output", blocker, overwrite=True) == blocker
    assert "is a folder; name a file" in refusal("--output", tmp_path, overwrite=True)
    assert "is a device; name a regular file" in refusal("--output", "/dev/null", overwrite=True)
    assert "is a file, not a folder" in refusal("--logdir", blocker, folder=True)
    assert "cannot write in /proc (it takes no new files)" in refusal("--out_dir", "/proc/eval", folder=True)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "is a FIFO; name a regular file" in refusal("--output", fifo, overwrite=True)
    # A folder output is refused only for the files it would replace.
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}")
    assert outputs.check("--out_dir", tmp_path / "reports", folder=True, replaces=["grid.png"])
    assert "already holds metrics.json; pass --overwrite" in refusal(
        "--out_dir", tmp_path / "reports", folder=True, replaces=["metrics.json", "grid.png"])
    (tmp_path / "reports" / "grid.png").mkdir()
    assert "grid.png is a folder where this command writes a file" in refusal(
        "--out_dir", tmp_path / "reports", folder=True, overwrite=True, replaces=["grid.png"])
    # New paths below new folders are fine, and checking them creates nothing.
    assert outputs.check("--output", tmp_path / "new" / "deeper" / "film.mp4")
    assert outputs.check("--logdir", tmp_path / "new" / "run", folder=True)
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".colorgan-probe")]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from colorgan import models
    path = tmp_path_factory.mktemp("model") / "mine.keras"
    models.build_generator("unet", image_size=32, base_filters=8, depth=5).save(str(path))
    return path


def test_export_never_replaces_a_file_unasked(model_file, capsys):
    """`export --format=keras --model=mine.keras --output=mine.keras` replaced a float32 model with its
    float16 copy, exit 0. Now it is refused unless --overwrite; with it, the file is replaced whole."""
    before = model_file.read_bytes()
    status, lines = run_cli(capsys, "export", "--format=keras", f"--model={model_file}", f"--output={model_file}")
    assert status == 2 and lines == [f"error: --output={model_file} already exists; pass --overwrite to "
                                     "replace it, or another --output"]
    assert model_file.read_bytes() == before
    status, lines = run_cli(capsys, "export", "--format=keras", f"--model={model_file}", f"--output={model_file}",
                        "--overwrite", "--parity_photos=1")
    assert status == 0, lines
    assert model_file.read_bytes() != before and model_file.stat().st_size < len(before)  # float16 weights
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["mine.keras"]


def test_export_to_a_folder_refuses_the_files_it_would_replace(model_file, tmp_path, capsys):
    (tmp_path / "colorgan_float32.json").write_text("{}")  # the metadata of an earlier float32 export
    status, lines = run_cli(capsys, "export", "--format=tflite", "--variants=float32,float16", f"--model={model_file}",
                        f"--output={tmp_path}")
    assert status == 2 and lines == [f"error: --output={tmp_path} already holds colorgan_float32.json; pass "
                                     "--overwrite to replace it, or another --output"]
    (tmp_path / "colorgan" / "3").mkdir(parents=True)
    status, lines = run_cli(capsys, "export", "--format=saved_model", "--version=3", f"--model={model_file}",
                        f"--output={tmp_path}")
    assert status == 2 and lines == [f"error: {tmp_path / 'colorgan' / '3'} already exists; pick another "
                                     "--version, or pass --overwrite to replace it"]


def test_evaluate_never_replaces_earlier_reports_unasked(tmp_path, capsys):
    out = tmp_path / "eval"
    common = ("evaluate", "--model=gray", "--data=samples", "--max_images=2", "--size=32", "--nofid",
              "--grid_images=1", "--extremes=1", f"--out_dir={out}")
    assert run_cli(capsys, *common)[0] == 0
    written = {name: (out / name).read_bytes() for name in ("metrics.json", "per_image.csv", "grid.png")}
    status, lines = run_cli(capsys, *common)
    assert status == 2 and lines[-1].startswith(f"error: --out_dir={out} already holds metrics.json, "
                                                "per_image.csv, grid.png, ...; pass --overwrite")
    assert all((out / name).read_bytes() == data for name, data in written.items())
    assert run_cli(capsys, *common, "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["protocol"]["images"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # every report written atomically
