"""python evaluate.py [--flags]: the same as `colorgan evaluate` (see colorgan/cli/evaluate.py)."""
import sys

from colorgan.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("evaluate", sys.argv))
