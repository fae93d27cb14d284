"""`vaekit` sub-commands for figures and the run report (plot, report)."""

from __future__ import annotations

import argparse
from typing import Callable

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's sub-commands to ``sub``; return {command name: handler}."""
    return {}
