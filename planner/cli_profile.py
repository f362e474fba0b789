"""``plan profile``: import measured profiles and estimate missing rows."""

from __future__ import annotations

import typer

profile_app = typer.Typer(help="Import profiled runs (vLLM, ML.ENERGY, CSV) and estimate missing profile rows.",
                          no_args_is_help=True, rich_markup_mode=None)
