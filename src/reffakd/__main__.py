"""``python -m reffakd``: the same as the ``reffakd`` command."""

import sys

from .cli import main

sys.exit(main())
