"""vaekit: variational autoencoders in PyTorch.

The top-level import is light (torch only); plotting, data readers and the CLI load their own dependencies
when used. See ``vaekit.models.VAE`` and ``vaekit.objectives.ELBO`` for the main entry points.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
