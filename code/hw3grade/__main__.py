import sys

from hw3grade.cli import main

sys.exit(main())
