"""``python -m figures ...``: see ``figures.cli``."""

import sys

import matplotlib

matplotlib.use("Agg")  # the command line never needs a screen

from figures.cli import main  # noqa: E402

sys.exit(main())
