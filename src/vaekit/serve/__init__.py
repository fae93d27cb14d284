"""``vaekit serve``: explore a trained model in the browser.

An HTTP API (FastAPI, the optional ``serve`` extra: ``pip install 'vaekit[serve]'``) and one page served with it
that needs no network. ``vaekit.serve.explorer`` holds the model-side logic (torch only); ``vaekit.serve.app``
builds the web application; ``vaekit.serve.images`` encodes PNGs and validates uploads. Importing this package
imports neither torch nor FastAPI.

Coordinates: every latent vector the API speaks is ``u``, the latent in prior units. For a one-latent VAE,
z = mu_p + sigma_p * u (u = z for the N(0, I) prior). For a Ladder VAE, u concatenates the layers' standardised
noise of the generative model, layer 1 first: z_L = u_L and z_i = mu_p,i(z_{i+1}) + sigma_p,i(z_{i+1}) * u_i,
so that every slider moves the image and resampling one layer keeps the others' noise.
"""

__all__ = ["create_app", "Explorer"]


def __getattr__(name: str):
    if name == "create_app":
        from vaekit.serve.app import create_app

        return create_app
    if name == "Explorer":
        from vaekit.serve.explorer import Explorer

        return Explorer
    raise AttributeError(f"module 'vaekit.serve' has no attribute {name!r}")
