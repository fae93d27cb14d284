"""Data-parallel training and sharded evaluation on CPU: two gloo processes started by the test (torchrun)."""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vaekit.config import TrainConfig
from vaekit.training.distributed import DistInfo, shard

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], n: int = 2, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master-addr=127.0.0.1",
           f"--master-port={_port()}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=240, **kw)
    # the ranks' own one-line errors first: torchrun's report of a failed child is long
    r.stderr = "\n".join(ln for ln in r.stderr.splitlines() if ln.startswith("vaekit")) + "\n" + r.stderr
    return r


def test_shards_are_disjoint_cover_the_batch_and_follow_a_new_permutation_each_epoch():
    idx = torch.randperm(37, generator=torch.Generator().manual_seed(0))
    parts = [shard(idx, DistInfo(r, 2, r)) for r in range(2)]
    assert torch.equal(torch.cat(parts), idx) and abs(len(parts[0]) - len(parts[1])) <= 1
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert torch.equal(shard(idx, DistInfo()), idx)  # one process: the whole batch
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    tr = Trainer(build_vae((4,), latent_dim=2, hidden=(4,)), ELBO(), torch.rand(10, 4), None,
                 settings=TrainConfig(batch_size=10, progress=False), run_dir=None)
    tr._next_batch()
    first = tr.perm.clone()
    tr.state.batch = 0
    tr._next_batch()
    assert not torch.equal(first, tr.perm)  # epoch 2 has its own permutation (every rank draws the same)


def test_only_rank_0_rewrites_the_metrics_on_resume(tmp_path):
    """A resumed run's records after its checkpoint are dropped by rank 0 alone: a second rank rewriting
    metrics.jsonl too raced rank 0's removal of stale temporary files (a resume failing with 'no such file')."""
    from vaekit.training import Trainer

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 20}\n')
    before = path.stat().st_ino
    Trainer._truncate_metrics(SimpleNamespace(run_dir=tmp_path, dist=DistInfo(1, 2, 1)), 10)
    assert path.read_text() == '{"step": 10}\n{"step": 20}\n' and path.stat().st_ino == before  # not rewritten
    Trainer._truncate_metrics(SimpleNamespace(run_dir=tmp_path, dist=DistInfo(0, 2, 0)), 10)
    assert path.read_text() == '{"step": 10}\n'


def test_a_command_leaves_the_process_group_it_joined_and_keeps_its_callers(monkeypatch):
    """`vaekit train`/`evaluate` under torchrun destroy the group they joined before the interpreter exits (a
    gloo group left for interpreter shutdown can abort a finished rank); a group the caller made stays open."""
    import torch.distributed as dist
    from vaekit.cli import catalog, core as cli

    def joins(fail: bool):
        def handler(a):
            dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
            if fail:
                raise ValueError("bad input")
            return 0
        return handler

    for fail, code in ((False, 0), (True, 2)):
        monkeypatch.setattr(catalog, "_cmd_datasets", joins(fail))
        assert cli.main(["datasets"]) == code
        assert not dist.is_initialized()
    monkeypatch.undo()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert cli.main(["datasets"]) == 0
        assert dist.is_initialized()  # the caller's: left alone
    finally:
        dist.destroy_process_group()


LEAVE = r'''
import os, sys, time, torch
from vaekit.training.distributed import init_from_env, leave

init_from_env(torch.device("cpu"))
if os.environ["RANK"] == "1":  # this rank's command failed: it leaves without waiting, then lingers a little
    leave(wait=False)
    time.sleep(2)
    sys.exit(2)
t = time.monotonic()
leave()  # the finished rank: its exit barrier must not wait for the group's timeout
print(f"left after {time.monotonic() - t:.2f} s", flush=True)
'''


def test_a_finished_rank_does_not_wait_at_its_exit_barrier_for_a_rank_that_failed(tmp_path):
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    r = _torchrun([str(script)], env={**ENV, "VAEKIT_DIST_TIMEOUT": "60"})
    assert r.returncode != 0  # torchrun reports rank 1's failure
    left = [ln for ln in r.stdout.splitlines() if ln.startswith("left after")]
    assert left, r.stdout + r.stderr[-2000:]
    assert float(left[0].split()[2]) < 1.5  # before rank 1 even exits, far from the 60 s timeout


SCRIPT = r'''
import os, sys, torch
from vaekit.config import TrainConfig
from vaekit.evaluation import estimate_log_likelihood
from vaekit.models import build_vae
from vaekit.models.contract import LatentGroup, ModelOutput
from vaekit.models.vae import VAE
from vaekit.objectives import ELBO
from vaekit.training import Trainer
from vaekit.training.distributed import init_from_env


class MeanVAE(VAE):
    """z = the posterior mean: no noise, so one process and two ranks see exactly the same computation."""

    def forward(self, x, n_samples=1, **options):
        q = self.encode(x)
        g = LatentGroup("z", q, self.prior(), q.loc)
        return ModelOutput([g], self.decoded(g.z), 0)


def three_steps(info):
    """Gradients and weights after three steps on batches of 14, 14 and 2 (the last one split 1 + 1), float64."""
    torch.manual_seed(0)
    m = build_vae((12,), latent_dim=3, hidden=(16,)).double()
    model = MeanVAE(m.encoder, m.posterior, m.decoder, m.likelihood, m.prior)
    x = (torch.rand(30, 12, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    tr = Trainer(model, ELBO(), x, None, settings=TrainConfig(batch_size=14, progress=False), run_dir=None,
                 dist_info=info)
    grads = []
    for step in range(3):
        xb = tr._next_batch()
        tr.train_step(xb)
        grads.append(torch.cat([p.grad.flatten() for p in tr.model.parameters()]))
        tr.state.batch += 1
    return {"grads": grads, "params": [p.detach() for p in tr.model.parameters()]}


def sharded_log_px(info):
    """Per-example log p(x) of 7 points (K = 64), the importance sampling split across the ranks (4 + 3 points)."""
    torch.manual_seed(0)
    m = build_vae((12,), latent_dim=3, hidden=(16,))
    x = (torch.rand(7, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    return estimate_log_likelihood(m, x, k=64, seed=5, shard=info).per_example


if __name__ == "__main__":  # under torchrun: SCRIPT OUT.pt RUN_DIR TRAIN_ARGS...; rank 0 saves the results
    from vaekit.cli import main
    from vaekit.training.distributed import leave

    info = init_from_env(torch.device("cpu"))  # joined here: the training uses it and leaves it to this script
    if main(["train", "--out", sys.argv[2], "--quiet", *sys.argv[3:]]) != 0:  # as `-m vaekit train` would run it
        sys.exit(1)
    res = {**three_steps(info), "per_example": sharded_log_px(info)}
    if info.rank == 0:
        torch.save(res, sys.argv[1])
    leave()
    if info.rank == 0 and os.path.isdir("/proc/self/task"):  # Linux: the threads this process still runs
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
        open(sys.argv[1] + ".threads", "w").write("\n".join(names))
'''
TRAIN = ["train.steps=120", "train.batch_size=32", "train.val_every=20", "train.checkpoint_every=20"]


@pytest.fixture(scope="module")
def two_rank_launch(tmp_path_factory) -> SimpleNamespace:
    """One torchrun launch (two gloo ranks) serves the module: SCRIPT trains the uninterrupted 2-rank run the kill
    test compares against (`vaekit train`, TRAIN), then computes the DDP steps and the sharded evaluation.
    one: the same functions run in this process on one thread (no process group), the single-process reference;
    two: the ranks' results; full: the uninterrupted run's folder."""
    from vaekit.process_state import preserve_process_state

    d = tmp_path_factory.mktemp("ddp")
    script = d / "ddp.py"
    script.write_text(SCRIPT)
    r = _torchrun([str(script), str(d / "two.pt"), str(d / "full"), *TRAIN])
    assert r.returncode == 0, r.stderr[:2000]
    with preserve_process_state():
        torch.set_num_threads(1)
        fns = runpy.run_path(str(script))  # not as __main__: the functions only
        one = {**fns["three_steps"](DistInfo()), "per_example": fns["sharded_log_px"](DistInfo())}
    threads = d / "two.pt.threads"
    return SimpleNamespace(one=one, two=torch.load(d / "two.pt"), full=d / "full",
                           threads=threads.read_text().split() if threads.exists() else None)


def test_leaving_the_group_stops_the_gloo_threads(two_rank_launch):
    """After `leave()` no gloo thread is left for interpreter shutdown, where one can abort a finished rank
    ("terminate called without an active exception"). The launch trained with DDP, whose constructor imports
    torch.distributed.nn.functional; had that happened after the group existed, the group would outlive
    destroy_process_group (its functions' default arguments hold it) and the threads would still run."""
    if two_rank_launch.threads is None:
        pytest.skip("needs /proc/self/task (Linux) to list a process's threads")
    assert not [t for t in two_rank_launch.threads if "gloo" in t], two_rank_launch.threads


def test_two_rank_step_equals_one_process_on_the_global_batch(two_rank_launch):
    a, b = two_rank_launch.one, two_rank_launch.two
    assert len(a["grads"]) == len(b["grads"]) == 3
    for g1, g2 in zip(a["grads"], b["grads"]):  # float64: the averaged gradient equals the global-batch one
        torch.testing.assert_close(g2, g1, rtol=1e-10, atol=1e-12)
    for p1, p2 in zip(a["params"], b["params"]):
        torch.testing.assert_close(p2, p1, rtol=1e-10, atol=1e-12)


def test_sharded_evaluation_equals_the_single_process_one_per_example(two_rank_launch):
    a, b = two_rank_launch.one["per_example"], two_rank_launch.two["per_example"]
    assert a.shape == b.shape == (7,)  # 4 + 3 points, no padded duplicates
    assert float((a - b).abs().max()) <= 1e-5


def _kill_tree(pid: int) -> None:
    """kill -9 of a process and all its descendants (torchrun's workers are not in the launcher's group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _train(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master-addr=127.0.0.1",
           f"--master-port={_port()}", "-m", "vaekit", "train", "--out", str(out), "--quiet", *TRAIN, *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_killed_two_rank_run_resumes_to_the_weights_of_an_uninterrupted_one(two_rank_launch, tmp_path, capsys):
    """The uninterrupted 2-rank run is the module launch's (the same TRAIN); this one is killed -9 after its
    step-40 checkpoint and resumed by a new torchrun launch."""
    from vaekit.training import load_checkpoint

    full = two_rank_launch.full
    lines = (full / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(ln)["step"] for ln in lines}) == 6  # one record per step, not two
    part = _train(tmp_path / "part", "train.time_limit=10000")
    ckpt = tmp_path / "part" / "last.json"
    deadline = time.time() + 240
    while time.time() < deadline and part.poll() is None and not (
            ckpt.exists() and json.loads(ckpt.read_text())["step"] >= 40):
        time.sleep(0.05)
    _kill_tree(part.pid)  # kill -9 of the launcher and both ranks
    part.wait()
    time.sleep(0.5)
    step = json.loads(ckpt.read_text())["step"]
    assert 40 <= step < 120
    r = _torchrun(["-m", "vaekit", "train", "--resume", str(tmp_path / "part"), "--quiet",
                   "train.time_limit=10000"])
    assert r.returncode == 0, r.stderr[:2000]
    a, _ = load_checkpoint(full / "last.safetensors")
    b, doc = load_checkpoint(tmp_path / "part" / "last.safetensors")
    assert doc["step"] == 120 and doc["world_size"] == 2
    for k in a:
        if k.startswith("model."):
            assert torch.equal(a[k], b[k]), k
    # another world size (this one process, the CLI run in-process) is refused with a clear message
    from vaekit.cli import main
    from vaekit.process_state import preserve_process_state

    capsys.readouterr()
    with preserve_process_state():
        code = main(["train", "--resume", str(tmp_path / "part"), "train.steps=140"])
    err = capsys.readouterr().err
    assert code == 2 and "trained with 2 process(es)" in err, err


def test_a_failed_rendezvous_is_a_one_line_error(tmp_path):
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_port()), "VAEKIT_DIST_TIMEOUT": "3"}
    r = subprocess.run([sys.executable, "-m", "vaekit", "train", "--out", str(tmp_path / "r"), "train.steps=5"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "could not join the torchrun process group" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_two_rank_run_on_streamed_images_equals_the_in_memory_one(tmp_path):
    """Under torchrun each rank decodes its part of every batch in its own worker process: the trained weights
    are those of the same 2-rank run on the images held in memory."""
    from PIL import Image
    from safetensors.torch import load_file

    rng = torch.Generator().manual_seed(0)
    for i in range(70):
        (tmp_path / "imgs" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        px = torch.randint(0, 256, (6, 6, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(px).save(tmp_path / "imgs" / "ab"[i % 2] / f"{i:03d}.png")
    weights = {}
    for storage in ("stream", "memory"):
        r = _torchrun(["-m", "vaekit", "train", "--quiet", "--out", str(tmp_path / storage), "data.name=image-folder",
                       f"data.path={tmp_path / 'imgs'}", f"data.storage={storage}", "data.workers=1",
                       "train.steps=9", "train.batch_size=16", "model.hidden=[8]", "model.latent_dim=2"])
        assert r.returncode == 0, r.stderr[:2000]
        weights[storage] = load_file(str(tmp_path / storage / "last.safetensors"))
    assert weights["stream"].keys() == weights["memory"].keys()
    assert all(torch.equal(weights["stream"][k], weights["memory"][k]) for k in weights["stream"])
    assert json.loads((tmp_path / "stream" / "summary.json").read_text())["steps"] == 9
