"""The configuration owned by its components: every key declared once with its type, default and doc; one
``validate`` that refuses every bad value (naming the key) before anything is printed, loaded or written;
``--help`` and ``vaekit presets`` generated whole; old config files and saved models still load."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest

from vaekit.cli import main
from vaekit.config import (ConfigError, DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, apply_overrides,
                           config_from_dict, dump_config, load_config, parse_yaml, valid_keys, validate)
from vaekit.model_config import family_keys
from vaekit.registry import list_presets, load_preset

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"
README = Path(__file__).resolve().parents[1] / "README.md"


def _err(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


BAD = [  # (overrides, what the one-line error must say)
    (["model.family=vqvae"], "model.family"), (["model.family=ladr"], "did you mean 'ladder'"),
    (["train.lr_schedule=cosin"], "did you mean 'cosine'"), (["train.device=gpu"], "train.device"),
    (["train.time_clock=gpu"], "train.time_clock"), (["train.precision=fp8"], "train.precision"),
    (["model.merge=false"], "model.merge applies to model.family=ladder"),
    (["model.family=ladder", "model.dropout=0.2"], "applies to model.family=vae"),  # the preset's latent_dim first
    (["model.latent_dims=[3, 2]"], "model.latent_dims applies to model.family=ladder"),
    (["data.labels=50"], "data.labels"),
    (["model.objective=m2"], "needs a classifier model"),
    (["model.family=ladder", "model.latent_dim=10", "model.objective=beta-tcvae"], "model.objective=beta-tcvae needs"),
    (["model.objective=beta-tcvae"], "applies to model.objective=elbo"),  # the preset's warm-up
    (["model.likelihood=gausian"], "did you mean 'gaussian'"), (["model.posterior=iafs"], "model.posterior"),
    (["model.posterior_options={stepz: 2}", "model.posterior=iaf"], "did you mean 'steps'"),
    (["model.likelihood=gaussian", "model.likelihood_options={sigma: abc}"], "model.likelihood_options.sigma"),
    (["model.likelihood=gaussian", "model.likelihood_options={sigma: 0}"], "model.likelihood_options.sigma"),
    (["model.objective=factor-vae", "model.objective_options={gama: 3}"], "did you mean 'gamma'"),
    (["train.loggers=[mlfow]"], "did you mean 'mlflow'"), (["data.binarize=sometimes"], "data.binarize"),
    (["model.conv_out=deconv"], "model.arch=conv"), (["model.family=m2", "model.arch=conv"], "model.arch=mlp"),
    (["train.steps=-5"], "train.steps"), (["train.betas=[0.9]"], "train.betas"),
    (["data.image_size=[8]"], "data.image_size"), (["data.name=mnsit"], "did you mean 'mnist'"),
    (["model.act=swishy"], "model.act"), (["model.posterior_options={logvar_min: 9}"], "logvar_min"),
]


@pytest.mark.parametrize("overrides, needle", BAD)
def test_every_bad_value_fails_before_anything_is_printed_or_written(tmp_path, capsys, monkeypatch, overrides,
                                                                     needle):
    monkeypatch.chdir(tmp_path)
    for extra in (["--print-config"], ["--out", "run"], []):
        code, out, err = _err(capsys, "train", "--quiet", *extra, *overrides)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], (extra, lines)
        assert out == "" and list(tmp_path.iterdir()) == []  # no config printed, no run folder, no runs/


def _bad_value(key: str) -> object:
    """A value of the wrong type, or outside the choices, for ``key`` (its declaration read as a whole)."""
    from vaekit.models.registry import FAMILIES

    section, _, leaf = key.rpartition(".")
    owners = family_keys().get(leaf) if section == "model" else None
    cls = FAMILIES[owners[0]].options if owners else \
        {"": RunConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}[section]
    tp = typing.get_type_hints(cls)[leaf]
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == leaf)
    if tp is bool or typing.get_origin(tp) is dict:
        return 5
    if tp in (str, str | None):  # a name checked against a registry or a syntax; any text: a number is wrong
        return "zz-not-a-choice" if "choices" in meta or "syntax" in meta else 5
    return "zz-not-a-choice" if "Literal" in str(tp) else "[abc]" if "list" in str(tp) else "abc"


@pytest.mark.parametrize("key", valid_keys())
def test_a_wrong_value_of_any_key_names_that_key(key):
    owners = family_keys().get(key.removeprefix("model.")) if key.startswith("model.") else None
    family = [f"model.family={owners[0]}"] if owners and key != "model.family" else []
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(apply_overrides(RunConfig(), [*family, f"{key}={json.dumps(_bad_value(key))}"]))


def test_every_key_the_readme_names_is_declared():
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:data|model|train|eval)\.[a-z_0-9]+)(?![a-z_0-9(.])", text)) - {"model.json"}
    assert named and named <= set(valid_keys()), named - set(valid_keys())


def test_train_help_lists_every_key_with_its_type_and_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = re.sub(r"\n {6}", " ", capsys.readouterr().out)  # one line per key
    for key in valid_keys():
        assert re.search(rf"^  {re.escape(key)}  .*, default ", text, re.M), key
    from vaekit.likelihoods.registry import LIKELIHOOD_SPECS
    from vaekit.objectives.registry import OBJECTIVES
    from vaekit.posteriors.registry import POSTERIOR_SPECS

    for key, specs in (("likelihood", LIKELIHOOD_SPECS), ("posterior", POSTERIOR_SPECS), ("objective", OBJECTIVES)):
        for name, spec in specs.items():
            headings = [ln for ln in text.splitlines() if ln.startswith(f"model.{key}")]
            assert any(re.search(rf"[=/]{re.escape(name)}\b", h) for h in headings), (key, name)
            for f in dataclasses.fields(spec.options):
                assert re.search(rf"^  {f.name}  .*, default ", text, re.M), (name, f.name)
    from vaekit.models.registry import FAMILIES

    assert f"model.family  {' | '.join(FAMILIES)}, default vae" in text  # every family, in registration order


def test_evaluate_help_lists_the_data_keys(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "data.name  " in text and "train.lr  " not in text


def test_presets_print_whole_descriptions(capsys):
    code, out, _ = _err(capsys, "presets")
    assert code == 0
    printed: dict[str, str] = {}
    for line in out.splitlines():
        if line[:1].strip():
            name, _, text = line.partition(" ")
            printed[name] = text.strip()
        else:
            printed[name] += " " + line.strip()
    presets = list_presets()
    assert printed == presets
    for name, text in presets.items():
        assert text.endswith("."), name
        raw = parse_yaml((SRC / "presets" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert raw["description"] == text


@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_preset_round_trips_through_config_yaml(preset):
    """dump(load(x)) == x: every key the preset sets keeps its value, and the dump loads back to the same config."""
    cfg = validate(load_preset(preset))
    dumped = parse_yaml(dump_config(cfg))
    raw = parse_yaml((SRC / "presets" / f"{preset}.yaml").read_text(encoding="utf-8"))
    for section, values in raw.items():
        if section == "description":
            continue
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            got = dumped[section] if key is None else dumped[section][key]
            assert got == value, (section, key, got, value)
    assert config_from_dict(dumped) == cfg


OLD_VAE_CONFIG = """\
seed: 3
name: mine
data: {name: digits, dir: null, path: null, binarize: none, dequantize: false, val_fraction: 0.1, image_size: null,
  grayscale: null, classes: null, labels: null, merge_val: false, dataset_options: {}}
model: {family: vae, arch: mlp, latent_dim: 4, latent_dims: [64, 32], hidden: [16], act: relu, dropout: 0.0,
  conv_channels: [32, 64], conv_out: conv3x3, likelihood: sigma-vae, likelihood_options: {init_log_sigma: 0.0,
  min_log_sigma: -6.0}, posterior: gaussian, posterior_options: {logvar_min: -12.0, logvar_max: 8.0},
  batch_norm: false, merge: true, n_classes: 10, m1_run: null, m1_units: null, beta: 1.0, warmup_steps: 0,
  free_bits: 0.0, n_samples: 1, objective: elbo, objective_options: {}}
train: {epochs: 10, steps: 5, lr: 0.001, lr_schedule: cosine}
eval: {iw_samples: 20, batch_size: 500}
"""


def test_an_old_flat_config_file_loads_and_means_the_same(tmp_path):
    """A config.yaml of the flat 24-key model section: other families' keys at their defaults are dropped."""
    path = tmp_path / "config.yaml"
    path.write_text(OLD_VAE_CONFIG)
    cfg = validate(load_config(path))
    m = cfg.model
    assert (m.family, m.latent_dim, m.hidden, m.likelihood, m.posterior_options["logvar_max"]) == \
        ("vae", 4, [16], "sigma-vae", 8.0)
    assert (cfg.seed, cfg.train.steps, cfg.train.lr_schedule) == (3, 5, "cosine")
    assert "merge" not in cfg.model.to_dict() and "n_classes" not in cfg.model.to_dict()
    ladder = load_config(path, None)
    ladder.model.family = "ladder"  # the vae's own keys are not at the ladder's defaults: named
    with pytest.raises(ConfigError, match="model.latent_dim applies to model.family=vae"):
        validate(ladder)


def test_an_old_saved_model_header_loads(tmp_path):
    import vaekit
    from vaekit.registry import build_model
    from vaekit.training.checkpoint import save_checkpoint

    old = parse_yaml(OLD_VAE_CONFIG)["model"]
    model = build_model(config_from_dict({"model": old}).model, (6,))
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()},
                    {"format": "vaekit.model", "format_version": 1, "model": old, "data": {"shape": [6]}})
    loaded = vaekit.load(path)
    assert loaded.latent_dim == 4 and loaded.vaekit_spec["model"]["likelihood"] == "sigma-vae"
    vaekit.save(loaded, tmp_path / "again.safetensors")
    assert json.loads((tmp_path / "again.json").read_text())["model"] == loaded.vaekit_spec["model"]


def test_overrides_apply_in_any_order_and_keep_attribute_access():
    a = apply_overrides(RunConfig(), ["model.merge=false", "model.family=ladder"])
    b = apply_overrides(RunConfig(), ["model.family=ladder", "model.merge=false"])
    assert a == b and a.model.merge is False and type(a.model.options).__name__ == "LadderOptions"
    m = ModelConfig(latent_dim=3, hidden=[8])
    assert m.latent_dim == 3 and m.options.latent_dim == 3
    m.latent_dim = 5
    assert m.options.latent_dim == 5 and m.to_dict()["latent_dim"] == 5
    assert m.m1_units is None  # another family's key reads as its default
    assert ModelConfig(family="m2", n_classes=4).n_classes == 4


def test_validate_returns_declared_types():
    cfg = validate(apply_overrides(RunConfig(), ["train.steps=2e3", "model.likelihood=gaussian",
                                                 "model.likelihood_options={sigma: 1}"]))
    assert cfg.train.steps == 2000 and isinstance(cfg.train.steps, int)
    assert cfg.model.likelihood_options == {"sigma": 1.0} and isinstance(cfg.model.likelihood_options["sigma"], float)


def test_component_option_declarations_match_their_constructors():
    """The declared options of every likelihood and posterior are its constructor's keywords, same defaults."""
    import inspect

    from vaekit.likelihoods.registry import LIKELIHOOD_SPECS, load_likelihood
    from vaekit.nn.mlp import _ACTIVATIONS
    from vaekit.options import Activation
    from vaekit.posteriors.registry import POSTERIOR_SPECS, load_posterior

    for specs, load, skip in ((LIKELIHOOD_SPECS, load_likelihood, 1), (POSTERIOR_SPECS, load_posterior, 2)):
        for name, spec in specs.items():
            params = list(inspect.signature(load(name)).parameters.values())[skip:]
            ctor = {p.name: list(p.default) if isinstance(p.default, tuple) else p.default for p in params}
            declared = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                        for f in dataclasses.fields(spec.options)}
            assert declared == ctor, name
    assert set(typing.get_args(Activation)) == set(_ACTIVATIONS)
    from vaekit.training.callbacks import LOGGERS

    loggers = typing.get_type_hints(type(RunConfig().train))["loggers"]
    assert set(typing.get_args(typing.get_args(loggers)[0])) == set(LOGGERS)


def test_config_modules_compare_no_family_name():
    """Families are named only in their modules, their registry and the presets: what a family or objective
    needs is declared (options, capabilities, supervised), never found by comparing its name."""
    name = r"""["'](?:vae|ladder|m2)["']"""
    pattern = re.compile(rf"[!=]=\s*{name}|{name}\s*[!=]=|in \(\s*{name}")
    files = [p for p in SRC.rglob("*.py") if p.parent.name not in ("models", "presets")]  # every use, the CLI,
    files.append(SRC / "models" / "registry.py")  # the orchestration, the config; and the registry's own code
    hits = [f"{p.name}: {m.group(0)}" for p in files for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert not hits, hits


def test_a_family_chosen_on_the_command_line_leaves_the_presets_family_keys_behind():
    """`model.family=hvae` on a VAE preset: the preset's latent_dim (a VAE key, not the user's) is dropped, the
    shared keys stay; a key of another family that the user gives with it is still refused, naming its family."""
    cfg = apply_overrides(load_preset("digits-quick"), ["model.family=hvae"])
    assert cfg.model.family == "hvae" and "latent_dim" not in cfg.model.to_dict()
    assert cfg.model.hidden == load_preset("digits-quick").model.hidden  # a shared key: kept
    validate(cfg)
    with pytest.raises(ConfigError, match=r"model.latent_dim applies to model.family=vae"):
        validate(apply_overrides(load_preset("digits-quick"), ["model.family=hvae", "model.latent_dim=3"]))
    # a key both families declare keeps the preset's value
    assert apply_overrides(load_preset("digits-quick"), ["model.family=m2"]).model.latent_dim == \
        load_preset("digits-quick").model.latent_dim
