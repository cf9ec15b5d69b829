"""``python -m hw3build <command>``: see :mod:`hw3build.cli`."""

import sys

from hw3build.cli import main

sys.exit(main())
