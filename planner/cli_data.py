"""``plan data``: turn users' own carbon exports and request traces into scenario tables."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Build scenario tables (carbon, demand) from your own exports and traces.",
                       no_args_is_help=True, rich_markup_mode=None)
