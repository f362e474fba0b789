"""``python -m planner.cli``: the same as the ``plan`` command."""

import sys

from planner.cli.app import run

sys.exit(run())
