"""Model families that speak the contract of ``vaekit.models.contract``: the VAE (MLP or conv) and the Ladder VAE.

Families are named in ``vaekit.models.registry`` (name -> builder with typed options). Exports load on first use,
so importing the contract alone (as the objectives do) pulls in no family.
"""

from __future__ import annotations

import importlib

__all__ = ["VAE", "build_vae", "LadderVAE", "build_ladder", "LatentGroup", "ModelOutput", "LatentVariableModel"]

_WHERE = {"VAE": "vae", "build_vae": "build", "LadderVAE": "ladder", "build_ladder": "ladder",
          "LatentGroup": "contract", "ModelOutput": "contract", "LatentVariableModel": "contract"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"vaekit.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'vaekit.models' has no attribute {name!r}")
