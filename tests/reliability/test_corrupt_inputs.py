"""Corrupt inputs of every file type vaekit reads: a one-line error, exit code 2, nothing on disk changed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import QUICK, assert_one_line_error, cli, snapshot


def _png(path: Path, value: int = 128, size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


DAMAGE = {
    "zero-byte": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20,
    "not-an-image": lambda good: b"hello, I am text\n",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_png_in_an_image_folder(tmp_path, capsys, damage):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = b""
    for i in range(12):
        good = _png(folder / f"{i:02d}.png", 10 * i)
    (folder / "05.png").write_bytes(DAMAGE[damage](good))
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, "data.name=image-folder",
                       f"data.path={folder}")
    assert_one_line_error(code, err, "05.png")
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "garbage"])
def test_damaged_png_as_data_and_as_mask(trained, tmp_path, capsys, damage):
    good = _png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(DAMAGE[damage](good))
    (tmp_path / "old.npy").write_bytes(b"the user's previous output")
    before, run_before = snapshot(tmp_path), snapshot(trained)
    code, _, err = cli(capsys, "embed", trained, "--data", bad, "-o", tmp_path / "old.npy")
    assert_one_line_error(code, err, "bad.png")
    code, _, err = cli(capsys, "inpaint", trained, "--mask", bad, "--first", "4", "-o", tmp_path / "old.npy")
    assert_one_line_error(code, err, "bad.png")
    assert snapshot(tmp_path) == before and snapshot(trained) == run_before


def _arrays(tmp_path: Path) -> dict[str, bytes]:
    x = np.random.default_rng(0).random((40, 5)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, x)
    npz = io.BytesIO()
    np.savez(npz, x=x)
    csv = "\n".join(",".join(f"{v:.4f}" for v in row) for row in x).encode() + b"\n"
    return {".npy": buf.getvalue(), ".npz": npz.getvalue(), ".csv": csv}


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "binary"])
def test_damaged_array_files(tmp_path, capsys, suffix, damage):
    good = _arrays(tmp_path)[suffix]
    bad = {"zero-byte": b"", "truncated": good[: len(good) // 2 + 3],
           "binary": b"\xff\xfe\x00\x81" * 50}[damage]
    if suffix == ".csv" and damage == "truncated":
        bad = good[: len(good) // 2] + b"abc,\xff\n"
    f = tmp_path / f"data{suffix}"
    f.write_bytes(bad)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", *QUICK, "data.name=arrays",
                       f"data.path={f}", "model.likelihood=gaussian")
    assert_one_line_error(code, err, f"data{suffix}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text,needle", [
    (b"model:\n  latent_dim: 3\n   hidden: [8]\n", "line 3"),
    (b"model: {latent_dim: 3\n", "line 2"),
    (b"model:\n  latent_dim: \xff\xfe\n", "utf-8"),
    (b"- just\n- a list\n", "mapping"),
    (b"model:\n  latent_dims_typo: 3\n", "did you mean"),
])
def test_bad_config_files(tmp_path, capsys, text, needle):
    cfg = tmp_path / "my.yaml"
    cfg.write_bytes(text)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "train", "--quiet", "--config", cfg, "--out", tmp_path / "run", *QUICK)
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


CKPT_DAMAGE = {
    "zero-byte": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "header-cut": lambda b: b[:12],
    "garbage": lambda b: b"\x00" * 64,
}


@pytest.mark.parametrize("damage", sorted(CKPT_DAMAGE))
def test_damaged_checkpoints_for_every_command(trained, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for name in ("best.safetensors", "last.safetensors"):
        (run / name).write_bytes(CKPT_DAMAGE[damage]((run / name).read_bytes()))
    before = snapshot(run)
    commands = [["evaluate", run, "--iw-samples", "2"], ["sample", run, "-o", tmp_path / "s.png"],
                ["embed", run, "-o", tmp_path / "z.npy"], ["train", "--quiet", "--resume", run, "train.steps=30"],
                ["report", run], ["plot", run]]
    for argv in commands:
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, "checkpoint")
    assert snapshot(run) == before
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "z.npy").exists()


def test_checkpoint_json_with_an_unknown_key_still_loads_and_resumes(trained, tmp_path, capsys):
    """A newer vaekit may add keys to the checkpoint's JSON document: they are ignored, not fatal."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    for name in ("best", "last"):
        path = run / f"{name}.safetensors"
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads(f.metadata()["vaekit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        doc["from_the_future"] = {"x": 1}
        doc["trainer"]["new_counter"] = 7
        save_file(tensors, str(path), metadata={"vaekit": json.dumps(doc)})
    code, out, err = cli(capsys, "evaluate", run, "--iw-samples", "2", "--json")
    assert code == 0, err
    code, out, err = cli(capsys, "train", "--quiet", "--resume", run, "train.steps=30")
    assert code == 0 and "30 steps" in out, err


def test_checkpoint_without_a_data_shape_names_the_problem(trained, tmp_path, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "best.safetensors").unlink()
    path = run / "last.safetensors"
    with safe_open(str(path), framework="pt") as f:
        doc = json.loads(f.metadata()["vaekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del doc["data"]
    save_file(tensors, str(path), metadata={"vaekit": json.dumps(doc)})
    code, _, err = cli(capsys, "evaluate", run)
    assert_one_line_error(code, err, "data shape")


@pytest.mark.parametrize("what", ["metrics-torn-line", "summary-garbage", "metrics-not-utf8"])
def test_damaged_run_records(trained, tmp_path, capsys, what):
    """metrics.jsonl with a line cut short by a kill is read without it; a corrupt summary.json is named."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    if what == "metrics-torn-line":
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"step": 40, "loss": 1.')
    elif what == "metrics-not-utf8":
        with open(run / "metrics.jsonl", "ab") as f:
            f.write(b"\xff\xfe\n")
    else:
        (run / "summary.json").write_bytes(b"{not json")
    code, out, err = cli(capsys, "report", run, "-o", tmp_path / "r.html")
    if what == "summary-garbage":
        assert_one_line_error(code, err, "summary.json")
        assert not (tmp_path / "r.html").exists()
    else:
        assert code == 0, err
        assert (tmp_path / "r.html").is_file()


def _dataset_dir(tmp_path: Path, name: str) -> Path:
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    return d


@pytest.mark.parametrize("dataset,files", [
    ("mnist", {"train-images-idx3-ubyte.gz": b"\x1f\x8b\x08\x00broken gzip",
               "train-labels-idx1-ubyte.gz": b"", "t10k-images-idx3-ubyte.gz": b"",
               "t10k-labels-idx1-ubyte.gz": b""}),
    ("mnist", {"train-images-idx3-ubyte": b"\x00\x00\x08\x03\x00\x00",
               "train-labels-idx1-ubyte": b"\x00\x00\x08\x01", "t10k-images-idx3-ubyte": b"\x00\x00\x08\x03",
               "t10k-labels-idx1-ubyte": b"\x00\x00\x08\x01"}),
    ("binarized-mnist", {"binarized_mnist_train.amat": b"0 1 0 x\n", "binarized_mnist_valid.amat": b"0 1\n",
                         "binarized_mnist_test.amat": b"0 1\n"}),
    ("frey-face", {"frey_rawface.mat": b"MATLAB 5.0 MAT-file, broken" + b"\x00" * 10}),
])
def test_damaged_dataset_files(tmp_path, capsys, dataset, files):
    d = _dataset_dir(tmp_path, dataset)
    for name, data in files.items():
        (d / name).write_bytes(data)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "train", "--quiet", "--out", tmp_path / "run", "--data-dir", tmp_path / "data",
                       *QUICK, f"data.name={dataset}")
    assert_one_line_error(code, err)
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()
