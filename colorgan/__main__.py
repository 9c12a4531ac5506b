"""python -m colorgan COMMAND: the `colorgan` command (see colorgan/cli/__init__.py)."""
import sys

from colorgan.cli import main

if __name__ == "__main__":
    sys.exit(main())
