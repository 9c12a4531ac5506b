"""notebooks/colorize_and_train.ipynb: kept without outputs, and it runs top to bottom (with 2 + 2
training steps) in a fresh kernel, in a folder of its own, as a reader would run it."""
import os
import re

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat", reason="pip install nbformat nbclient ipykernel (the test extra)")
nbclient = pytest.importorskip("nbclient", reason="pip install nbformat nbclient ipykernel (the test extra)")

NOTEBOOK = os.path.join(REPO, "notebooks", "colorize_and_train.ipynb")


def read():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_the_notebook_is_kept_without_outputs():
    for cell in read().cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_the_notebook_runs_top_to_bottom(tmp_path):
    notebook = read()
    (parameters,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    source = parameters.source
    for name in ("PRETRAIN_STEPS", "TRAIN_STEPS"):
        source, found = re.subn(rf"^{name} = \d+$", f"{name} = 2", source, flags=re.M)
        assert found == 1, name
    parameters.source = source
    # The kernel starts in tmp_path: the run and the exports go there, under runs/notebook.
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 5  # the photo, its L*a*b*, the losses, the samples, the evaluation
    printed = "".join(output.get("text", "") for output in outputs)
    # ipykernel shows what C++ writes to stderr too: TensorFlow's start-up lines would be in the cells.
    assert "InitializeLog" not in printed and "I0000" not in printed and "INFO:tensorflow" not in printed
    assert re.search(r"step +4: generator/l1 [0-9.]+, generator/gan [0-9.]+, critic/loss [0-9.]+", printed), printed
    assert re.search(r"PSNR \(dB\) +[0-9.]+ +[0-9.]+", printed)  # the model beside gray
    assert len(re.findall(r"max \|ab\| [0-9.]+, mean \|ab\| [0-9.]+ against Keras", printed)) == 2
    exported = tmp_path / "runs" / "notebook" / "exported"
    assert (exported / "colorgan" / "1" / "saved_model.pb").is_file()
    assert (exported / "colorgan_float16.tflite").is_file()
