"""Arguments several CLI commands share."""

from __future__ import annotations

import argparse

__all__ = ["add_device_argument"]


def add_device_argument(p: argparse.ArgumentParser, default: str | None = "cpu", help: str | None = None) -> None:
    """``--device cpu|cuda|cuda:N|mps|auto`` for a command that runs a model (a missing device: exit 2)."""
    p.add_argument("--device", default=default, help=help or "where the model runs: cpu, cuda, cuda:N, mps or auto")
