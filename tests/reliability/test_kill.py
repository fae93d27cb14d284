"""kill -9 at random moments: during training (then --resume must work, bit for bit as a plain run's steps) and
during every writer (checkpoints, app outputs, figures, text): the file on disk is always a complete old or new
version, and the temporary files left behind are removed by the next process that locks the run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.reliability.conftest import cli, subprocess_env, vaekit_process
from vaekit.utils import remove_stale_temps

TRAIN = ["train.steps=100000", "train.val_every=7", "train.checkpoint_every=3", "model.hidden=[16]",
         "model.latent_dim=2"]


def test_kill_9_during_training_then_resume(tmp_path, capsys):
    rng = random.Random(14)
    run = tmp_path / "run"
    for trial in range(3):
        argv = ["--resume", run] if (run / "config.yaml").exists() else ["--out", run, *TRAIN]
        proc = vaekit_process("train", "--quiet", *argv)
        if trial > 0:  # the first kill comes at any moment of start-up; the others once training is under way
            deadline = time.time() + 120
            while not (run / "metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
    argv = ["--resume", run] if (run / "config.yaml").exists() else ["--out", run, *TRAIN]
    code, out, err = cli(capsys, "train", "--quiet", *argv, "train.steps=60")
    assert code == 0, err
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()
    doc = json.loads((run / "last.json").read_text())
    assert doc["step"] >= 60
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated or interleaved records after three kills


WRITER = r'''
import os, sys, numpy as np, torch
from pathlib import Path
folder = Path(sys.argv[1])
from vaekit.utils import atomic_save_npy, atomic_write_text
from vaekit.apps.inputs import write_csv
from vaekit.training.checkpoint import save_checkpoint
from vaekit.plots import save_image_grid
big = 200_000


def write_forever():
    i = 0
    while True:  # every writer in turn, each alternating between two complete versions of its file
        v = (i // 5) % 2
        kind = KINDS[i % 5]
        path = folder / NAMES[kind]
        if kind == "npy":
            atomic_save_npy(path, np.full(big, v, dtype=np.float32))
        elif kind == "csv":
            write_csv(path, {"z": np.full((20000, 3), float(v))})
        elif kind == "checkpoint":
            save_checkpoint(path, {"model.w": torch.full((big,), float(v))}, {"step": v})
        elif kind == "png":
            save_image_grid(torch.full((64, 1, 28, 28), float(v)), path, nrow=8)
        elif kind == "text":
            atomic_write_text(path, str(v) * big)
        i += 1


# the imports once; then, for each line read, a forked writer process (its pid printed) for the test to kill -9
while sys.stdin.readline():
    pid = os.fork()
    if pid == 0:
        try:
            write_forever()
        finally:
            os._exit(1)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("killed" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9 else f"status {status}", flush=True)
'''
NAMES = {"npy": "z.npy", "csv": "z.csv", "checkpoint": "last.safetensors", "png": "s.png", "text": "a.txt"}
WRITER = f"KINDS = {list(NAMES)!r}\nNAMES = {NAMES!r}\n" + WRITER


def _check_complete(kind: str, path) -> None:
    if kind == "npy":
        a = np.load(path)
        assert a.shape == (200_000,) and len(set(a.tolist())) == 1
    elif kind == "csv":
        a = np.loadtxt(path, delimiter=",", skiprows=1)
        assert a.shape == (20000, 3) and len(np.unique(a)) == 1
    elif kind == "checkpoint":
        from vaekit.training.checkpoint import load_checkpoint

        tensors, doc = load_checkpoint(path)
        assert float(tensors["model.w"][0]) == doc["step"] and tensors["model.w"].numel() == 200_000
    elif kind == "png":
        from PIL import Image

        with Image.open(path) as im:
            im.load()
    elif kind == "text":
        t = path.read_text()
        assert len(t) == 200_000 and len(set(t)) == 1


def test_kill_9_during_every_writer(tmp_path):
    """A process cycles through the writers (checkpoint, .npy, .csv, PNG, text); killed at random moments,
    every file on disk is a complete version."""
    rng = random.Random(14)
    forker = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=subprocess_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for trial in range(4):  # four writer processes (forked after the imports), each killed at a random moment
            forker.stdin.write("go\n")
            forker.stdin.flush()
            line = forker.stdout.readline()
            assert line.strip().isdigit(), forker.stderr.read()
            time.sleep(rng.uniform(0.05, 1.5))
            os.kill(int(line), signal.SIGKILL)
            assert forker.stdout.readline().strip() == "killed"  # reaped: nothing writes any more
            for kind, name in NAMES.items():
                if (tmp_path / name).exists():
                    _check_complete(kind, tmp_path / name)  # the old or the new version, never a partial one
    finally:
        forker.stdin.close()
        assert forker.wait(timeout=60) == 0, forker.stderr.read()
    assert any((tmp_path / name).exists() for name in NAMES.values())
    removed = remove_stale_temps(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    assert all(p.name.endswith(".tmp") and p.name.startswith(".") for p in removed)
