"""``python -m hw3sweep``: see :mod:`hw3sweep.cli`."""

import sys

from hw3sweep.cli import main

sys.exit(main())
