"""`vaekit` command line: parse, build a config, call the library, set the exit code.

``main`` and the core commands (train, evaluate, sample, reconstruct, datasets, presets) are in ``core``, which
dispatches to the modules that add the others: ``plots`` (plot, report), ``apps`` (embed, anomaly, classify,
inpaint, refine), ``compare``, ``serve``, ``disentangle``, ``restore``; ``common`` holds what they share.
"""

from vaekit.cli.core import main

__all__ = ["main"]
