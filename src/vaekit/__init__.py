"""vaekit: variational autoencoders in PyTorch.

    import vaekit
    model = vaekit.fit(x, model={"latent_dim": 8}, train={"steps": 2000})   # x: numpy array or tensor (N, ...)
    vaekit.save(model, "model.safetensors"); model = vaekit.load("model.safetensors")
    vaekit.evaluate(model, x_test, k=1000)                                    # ELBO, log p(x) ± s.e., ...

``import vaekit`` is light: it imports nothing (not even torch) until one of the names below is used. See
``vaekit.models.VAE`` and ``vaekit.objectives.ELBO`` for the building blocks, ``vaekit.api`` for fit/save/load.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it, imported on first use (PEP 562)
_LAZY = {
    "fit": "vaekit.api", "save": "vaekit.api", "load": "vaekit.api", "push_to_hub": "vaekit.api",
    "evaluate": "vaekit.evaluation", "estimate_log_likelihood": "vaekit.evaluation",
    "VAEEmbedding": "vaekit.apps.embed",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
