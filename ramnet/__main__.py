"""``python -m ramnet ...``: the same command line as the ``ramnet`` script."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
