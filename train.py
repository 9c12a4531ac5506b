"""python train.py [--flags]: the same as `colorgan train` (see colorgan/cli/train.py)."""
import sys

from colorgan.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv))
