"""``python -m auxnas ...``: the ``auxnas`` command line (also what ``torchrun -m auxnas train ...`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
