"""`vaekit.load` bounds a file's header before it builds anything from it, names the file in every refusal,
tells another program's safetensors file from a damaged one, and still loads every real model and run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vaekit.training.checkpoint import CheckpointError


def _rewrite(src: Path, dst: Path, change) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        doc = json.loads(f.metadata()["vaekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(doc)
    save_file(tensors, str(dst), metadata={"vaekit": json.dumps(doc)})
    return dst


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    import vaekit

    path = tmp_path_factory.mktemp("saved") / "model.safetensors"
    vaekit.save(vaekit.load(trained), path)
    return path


def test_real_models_and_runs_still_load(trained, saved, tmp_path):
    import vaekit

    x = torch.rand(3, 1, 8, 8)
    ref = vaekit.load(trained).embed(x)
    for source in (trained, trained / "best.safetensors", trained / "last.safetensors", saved):
        assert vaekit.load(source).embed(x).shape == ref.shape
    assert torch.allclose(vaekit.load(saved).embed(x), ref)


@pytest.mark.parametrize("section,key,value,needle", [
    ("model", "latent_dim", 1_000_000_000, "model.latent_dim = 1000000000"),
    ("model", "hidden", [65536, 65536], "2**30"),
    ("model", "hidden", [8] * 65, "model.hidden lists 65 entries"),
    ("model", "posterior_options", {"steps": 1e9}, "model.posterior_options.steps"),
    ("data", "shape", [1, 100000, 100000], "values per example"),
    ("data", "shape", ["a"], "data shape"),
])
def test_a_header_asking_for_too_much_is_refused_before_building(saved, tmp_path, monkeypatch, section, key, value,
                                                                  needle):
    import vaekit
    import vaekit.registry

    bad = _rewrite(saved, tmp_path / "bad.safetensors", lambda d: d[section].__setitem__(key, value))

    def no_build(*a, **kw):
        raise AssertionError("a model was built from the header before its bounds were checked")
    monkeypatch.setattr(vaekit.registry, "build_model", no_build)
    with pytest.raises(CheckpointError) as e:
        vaekit.load(bad)
    msg = str(e.value)
    assert "bad.safetensors" in msg and needle in msg and "\n" not in msg, msg


def test_a_run_checkpoint_header_is_bounded_too(trained, tmp_path, monkeypatch):
    import vaekit
    import vaekit.registry

    monkeypatch.setattr(vaekit.registry, "build_model", None)  # never reached: refused from the header
    ckpt = tmp_path / "best.safetensors"
    _rewrite(trained / "best.safetensors", ckpt, lambda d: d["config"]["model"].__setitem__("latent_dim", 10**9))
    with pytest.raises(CheckpointError, match="best.safetensors.*model.latent_dim"):
        vaekit.load(ckpt)


def test_a_format_version_that_is_not_a_number_names_the_file(saved, tmp_path):
    import vaekit

    bad = _rewrite(saved, tmp_path / "v.safetensors", lambda d: d.__setitem__("format_version", "abc"))
    with pytest.raises(CheckpointError, match=r"v\.safetensors' has format_version 'abc', not a whole number"):
        vaekit.load(bad)


def test_another_programs_safetensors_file_is_named_as_such(trained, tmp_path, capsys):
    import vaekit
    from safetensors.torch import save_file

    from tests.reliability.conftest import assert_one_line_error, cli

    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a vaekit model or checkpoint") as e:
        vaekit.load(other)
    assert "corrupt" not in str(e.value)
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    shutil.copy(other, run / "best.safetensors")
    code, _, err = cli(capsys, "evaluate", run, "--iw-samples", "2")
    assert_one_line_error(code, err, "best.safetensors", "not a vaekit model or checkpoint")


def test_every_preset_is_within_the_bounds():
    from vaekit.config import config_to_dict
    from vaekit.limits import model_problem
    from vaekit.presets import list_presets
    from vaekit.registry import load_preset

    for name in list_presets():
        model = config_to_dict(load_preset(name))["model"]
        for shape in ([1, 28, 28], [1, 64, 64], [3, 64, 64]):
            assert model_problem(model, shape) is None, (name, shape)
