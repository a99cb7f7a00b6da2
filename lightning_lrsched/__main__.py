"""``python -m lightning_lrsched ...`` runs the ``lrsched`` command line."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
