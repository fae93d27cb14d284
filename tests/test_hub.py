"""Sharing a model on the Hugging Face Hub: the folder push_to_hub uploads, and vaekit.load("hf://user/name")
reading it from huggingface_hub's cache, offline (no server is reachable from the tests; upload_folder needs one,
so push_to_hub itself is tested up to the folder it uploads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vaekit

ROOT = Path(__file__).resolve().parents[1]
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def model():
    x = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
    return vaekit.fit(x, model={"latent_dim": 2, "hidden": [8], "likelihood": "sigma-vae"}, train={"steps": 3},
                      seed=0, progress=False)


def _hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """huggingface_hub's cache layout for one model repository at one commit: refs/main names the commit, the
    files lie in snapshots/<commit>/ (huggingface_hub has no public API that writes it without a server)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / REV)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REV)


def _offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE when imported)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_the_upload_folder_holds_the_model_its_config_and_a_card(model, tmp_path):
    from vaekit.api import write_hub_folder

    folder = write_hub_folder(model, tmp_path / "up", repo_id="ada/tiny-vae")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model.json", "model.safetensors"]
    doc = json.loads((folder / "model.json").read_text())
    assert doc["format"] == "vaekit.model" and doc["model"]["latent_dim"] == 2 and doc["data"]["shape"] == [6]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: vaekit\n") and 'vaekit.load("hf://ada/tiny-vae")' in card
    assert "| likelihood p(x\\|z) | sigma-vae |" in card


def test_load_from_the_hub_cache_offline(model, tmp_path):
    pytest.importorskip("huggingface_hub", reason="vaekit.load('hf://...') needs the hub extra (huggingface_hub)")
    from vaekit.api import write_hub_folder

    _hub_cache(tmp_path / "cache", "ada/tiny-vae", write_hub_folder(model, tmp_path / "up", repo_id="ada/tiny-vae"))
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = f"""
import json, numpy as np, vaekit
from vaekit.training.checkpoint import CheckpointError
m = vaekit.load("hf://ada/tiny-vae")
m2 = vaekit.load("hf://ada/tiny-vae@{REV}")
x = np.load({str(tmp_path / 'x.npy')!r})
errors = []
for ref in ("hf://ada/other", "hf://ada/tiny-vae@v2"):
    try:
        vaekit.load(ref)
    except CheckpointError as e:
        errors.append(str(e))
print(json.dumps({{"z": m.embed(x).tolist(), "z2": m2.embed(x).tolist(), "errors": errors}}))
"""
    r = _offline(tmp_path / "cache", code)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.splitlines()[-1])
    np.testing.assert_allclose(out["z"], model.embed(x), rtol=1e-6)
    assert out["z2"] == out["z"]
    assert len(out["errors"]) == 2 and all("not in the local Hub cache" in e for e in out["errors"])
    assert out["errors"][0].startswith("cannot load 'hf://ada/other': ")


def test_hub_ids_and_the_missing_extra_are_named(model, monkeypatch):
    with pytest.raises(ValueError, match="write hf://user/name"):
        vaekit.load("hf://just-a-name")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"needs huggingface_hub: pip install 'vaekit\[hub\]'"):
        vaekit.load("hf://ada/tiny-vae")
    with pytest.raises(ImportError, match="needs huggingface_hub"):
        vaekit.push_to_hub(model, "ada/tiny-vae")
