"""Every command, app and the explorer API on every family: each one runs, or refuses in one line naming the
capability the model lacks. The toy family (tests/models/toy_family.py) is new in shape — an enumerated class, a
(C, H, W) latent map and a vector below it — and is added with its module, one registry entry and a preset only."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.models import toy_family
from vaekit.cli import main
from vaekit.process_state import preserve_process_state

FAST = ["train.steps=30", "train.val_every=15", "eval.iw_samples=10", "train.threads=1"]
FAMILIES = {
    "toy": None,  # the preset file below
    "vae": ["model.hidden=[32]", "model.latent_dim=3", "model.warmup_steps=0"],
    "vae-iaf": ["model.hidden=[32]", "model.latent_dim=3", "model.warmup_steps=0", "model.posterior=iaf",
                "model.posterior_options={steps: 1, hidden: [16], context: 8}"],
    "ladder": ["model.family=ladder", "model.latent_dim=10", "model.latent_dims=[3,2]", "model.hidden=[32,16]", "model.warmup_steps=0",
               "model.free_bits=0"],
    "vae-vamp": ["model.hidden=[32]", "model.latent_dim=3", "model.warmup_steps=0", "model.prior=vamp",
                 "model.prior_options={components: 5}"],
    "vae-vmf": ["model.hidden=[32]", "model.latent_dim=3", "model.warmup_steps=0", "model.posterior=vmf",
                "model.prior=sphere"],
    "discrete": ["model.family=discrete", "model.latent_dim=10", "model.hidden=[32]", "model.n_latents=4", "model.categories=3",
                 "model.warmup_steps=0", "model.free_bits=0", "model.anneal_steps=20"],
    "m2": ["model.family=m2", "model.objective=m2", "data.labels=100", "model.hidden=[32]", "model.latent_dim=3",
           "model.warmup_steps=0", "model.free_bits=0"],
    "dmm": ["model.family=dmm", "data.name=sines", "data.dataset_options={n: 60, t_max: 8}", "model.latent_dim=2",
            "model.transition_dim=8", "model.emission_dim=8", "model.rnn_dim=8", "model.warmup_steps=0",
            "model.free_bits=0"],
    "vrnn": ["model.family=vrnn", "data.name=sines", "data.dataset_options={n: 60, t_max: 8}", "model.latent_dim=2",
             "model.rnn_dim=8", "model.phi_dim=8", "model.warmup_steps=0", "model.free_bits=0"],
    "srnn": ["model.family=srnn", "data.name=sines", "data.dataset_options={n: 60, t_max: 8}", "model.latent_dim=2",
             "model.rnn_dim=8", "model.phi_dim=8", "model.warmup_steps=0", "model.free_bits=0"],
    "vqvae": ["model.family=vqvae", "model.objective=vq", "model.latent_dim=10", "model.arch=conv", "model.conv_channels=[16]",
              "model.codebook_size=16", "model.code_dim=4", "model.restart_after=5", "model.warmup_steps=0",
              "model.free_bits=0"],
    "hvae": ["model.family=hvae", "model.latent_dim=10", "model.width=8", "model.enc_blocks=[1,1]", "model.dec_groups=[1,1]",
             "model.latent_channels=1", "model.act=gelu", "model.warmup_steps=0", "model.free_bits=0"],
}
# (command, family) -> the capability named in its refusal; every other pair must succeed
REFUSES = {
    ("restore", "toy"): "continuous", ("restore", "m2"): "continuous",
    ("inpaint", "toy"): "continuous", ("inpaint", "m2"): "continuous",
    ("refine", "toy"): "single-vector", ("refine", "m2"): "single-vector", ("refine", "ladder"): "single-vector",
    ("refine", "vae-iaf"): "gaussian-posterior", ("refine", "hvae"): "single-vector",
    ("classify", "hvae"): "classifier",
    ("classify", "toy"): "classifier", ("classify", "vae"): "classifier", ("classify", "vae-iaf"): "classifier",
    ("classify", "ladder"): "classifier",
    ("embed-sample", "toy"): "continuous", ("embed-sample", "m2"): "continuous",
    ("serve", "toy"): "continuous", ("serve", "m2"): "continuous",
    ("classify", "dmm"): "classifier", ("classify", "vrnn"): "classifier", ("classify", "srnn"): "classifier",
    ("refine", "dmm"): "single-vector", ("refine", "vrnn"): "single-vector", ("refine", "srnn"): "single-vector",
    ("restore", "vqvae"): "continuous", ("inpaint", "vqvae"): "continuous", ("refine", "vqvae"): "single-vector",
    ("classify", "vqvae"): "classifier", ("embed-sample", "vqvae"): "continuous", ("serve", "vqvae"): "continuous",
    # a prior that is not Gaussian (vamp here; mog and flow take the same paths, tests/priors): draws and
    # coordinates in z, but no N(0, I) prior on prior units for MAP or the explorer's samples
    **{(c, "vae-vamp"): "gaussian-prior" for c in ("restore", "inpaint", "serve")},
    ("classify", "vae-vamp"): "classifier",
    # z on a sphere (vMF posterior, uniform prior): draws, reconstructions and the bound work; coordinates that
    # move freely in R^D (MAP, the explorer, sample embeddings) and the Gaussian posterior's refinement refuse
    **{(c, "vae-vmf"): "continuous" for c in ("restore", "inpaint", "serve", "embed-sample")},
    ("refine", "vae-vmf"): "gaussian-posterior", ("classify", "vae-vmf"): "classifier",
    # discrete latents only (Gumbel-softmax): every use of continuous coordinates refuses
    **{(c, "discrete"): "continuous" for c in ("restore", "inpaint", "serve", "embed-sample")},
    ("refine", "discrete"): "single-vector", ("classify", "discrete"): "classifier",
}
# (command, family) refused for the run's data, not its model: restoration and the explorer need images (C, H, W);
# the sequence families model (T, D + 1) sequences
NEEDS_IMAGES = {(c, f) for c in ("restore", "serve") for f in ("dmm", "vrnn", "srnn")}


def run(capsys, *argv):
    with preserve_process_state():  # the CLI tunes the process (denormals) as an application does
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run folder per family."""
    toy_family.register()
    root = tmp_path_factory.mktemp("families")
    preset = root / "toy.yaml"
    preset.write_text(toy_family.PRESET)
    out = {}
    for name, overrides in FAMILIES.items():
        d = root / name
        argv = ["train", "--quiet", "--out", str(d)]
        argv += ["--config", str(preset)] if overrides is None else ["--preset", "digits-quick", *FAST, *overrides]
        with preserve_process_state():
            assert main(argv) == 0, name
        out[name] = d
    yield out
    toy_family.unregister()


COMMANDS = {
    "evaluate": lambda d, t: ["evaluate", d, "--iw-samples", 5, "--limit", 40, "--json"],
    "sample": lambda d, t: ["sample", d, "-n", 8, "-o", t / "s.png"],
    "reconstruct": lambda d, t: ["reconstruct", d, "-n", 8, "-o", t / "r.png"],
    "plot": lambda d, t: ["plot", d, "--kind", "all", "--out", t],
    "report": lambda d, t: ["report", d, "-o", t / "report.html"],
    "embed": lambda d, t: ["embed", d, "--limit", 20, "-o", t / "z.npy"],
    "embed-sample": lambda d, t: ["embed", d, "--limit", 20, "--what", "sample", "-o", t / "zs.npy"],
    "anomaly": lambda d, t: ["anomaly", d, "--limit", 20, "-k", 5, "-o", t / "a.csv"],
    "classify": lambda d, t: ["classify", d, "--limit", 20, "--score", "q"],
    "inpaint": lambda d, t: ["inpaint", d, "--limit", 4, "--steps", 3, "--mask", "bottom", "-o", t / "i.npy"],
    "refine": lambda d, t: ["refine", d, "--limit", 4, "--steps", 2, "--eval-samples", 4, "-k", 5],
    "restore": lambda d, t: ["restore", d, "--limit", 4, "--steps", 3, "--operator", "downsample:2", "--json"],
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs_or_names_the_missing_capability(runs, family, command, tmp_path, capsys):
    code, out, err = run(capsys, *COMMANDS[command](runs[family], tmp_path))
    lacking = REFUSES.get((command, family))
    if (command, family) in NEEDS_IMAGES:
        assert code == 2 and "needs images" in err and len(err.strip().splitlines()) == 1, err
    elif lacking is None:
        assert code == 0, err
    else:
        assert code == 2 and f"capability '{lacking}'" in err and len(err.strip().splitlines()) == 1, err


def test_the_toy_figures_and_report(runs, tmp_path, capsys):
    from vaekit.runs import run_figures

    written, skipped = run_figures(runs["toy"], ["all"], tmp_path)
    # class-conditional: analogies and class samples are drawn; the latent figures need continuous groups only
    assert {"reconstructions", "samples", "latent-map", "analogies", "class-samples", "curves", "kl"} <= set(written)
    for kind in ("traversals", "interpolation", "manifold"):
        assert "capability 'continuous'" in skipped[kind]
    z = np.load(tmp_path / "z.npy") if (tmp_path / "z.npy").exists() else None
    assert z is None
    code, out, err = run(capsys, "embed", runs["toy"], "--limit", 5, "-o", tmp_path / "z.npy")
    assert code == 0 and np.load(tmp_path / "z.npy").shape == (5, 3 + 8)  # bottom (3) and the 2x2x2 map


@pytest.mark.parametrize("family", [f for f in FAMILIES if ("serve", f) not in REFUSES and
                                    ("serve", f) not in NEEDS_IMAGES])
def test_the_explorer_api_serves_every_continuous_family(runs, family):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vaekit.cli.serve import build_explorer
    from vaekit.serve.app import create_app

    ex = build_explorer(str(runs[family]), "best", "cpu")
    c = TestClient(create_app(ex), base_url="http://127.0.0.1")
    info = c.get("/api/info").json()
    d = info["latent_dim"]
    assert sum(layer["dim"] for layer in info["layers"]) == d
    assert len(c.post("/api/decode", json={"u": [[0.0] * d]}).json()["images"]) == 1
    u = c.post("/api/sample", json={"n": 2, "temperature": 1.0, "seed": 0}).json()["u"]
    r = c.post("/api/resample", json={"u": u[0], "layer": len(info["layers"]) - 1, "temperature": 1.0, "seed": 1})
    assert r.status_code == 200, r.text
    assert len(c.post("/api/interpolate", json={"ua": u[0], "ub": u[1], "steps": 3}).json()["images"]) == 3
    p = c.get("/api/points/0")
    assert p.status_code == 200, p.text


def test_the_uses_layer_known_answers_on_the_toy(runs):
    """Prior units round-trip, and u ~ N(0, I) pushed through from_prior_units is the model's ancestral sample."""
    from vaekit.models.uses import from_prior_units, sample_latents, to_prior_units
    from vaekit.runs import load_run

    _, model, _ = load_run(runs["toy"])
    torch.manual_seed(0)
    z = sample_latents(model, 6, temperature=1.0)
    u = to_prior_units(model, z)
    back = from_prior_units(model, u)
    for name in ("bottom", "top"):
        torch.testing.assert_close(back[name], z[name], atol=1e-5, rtol=1e-5)
    assert torch.equal(back["y"], z["y"])
    # the same noise: z = mu_p + sigma_p eps top-down equals sample_latents at T = 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = sample_latents(model, 4, 1.0, generator=g1)
    eps_top = torch.randn(4, *toy_family.TOP, generator=g2)
    eps_bottom = torch.randn(4, 3, generator=g2)
    with torch.no_grad():
        p = model.group_prior("bottom", {"top": eps_top})
    torch.testing.assert_close(a["top"], eps_top)
    torch.testing.assert_close(a["bottom"], p.mean + p.stddev * eps_bottom)
