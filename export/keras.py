"""python export/keras.py [--flags]: the same as `colorgan export --format=keras` (see colorgan/cli/export.py)."""
import os
import sys

# Run as a file, Python puts this folder first on sys.path, where onnx.py and keras.py would be imported
# in place of the packages of those names; the checkout's root takes its place, as it is train.py's.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from colorgan.cli import export, run_module  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_module(export.command_for("keras"), sys.argv))
