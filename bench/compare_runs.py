"""Train several configurations side by side with the same budget, then evaluate them, and print a table.

Each run is a `vaekit train` process pinned to one thread (``--threads``), all started together, so on a
machine with as many cores as runs each gets one core for the same wall time; then each is evaluated with
`vaekit evaluate --json`. Example (the IAF comparison of docs/results/iaf-ladder.md):

  python bench/compare_runs.py --out runs/iaf-vs-gaussian --iw-samples 1000 --first 3000 \\
      --run "gaussian: --preset binarized-mnist-vae train.time_limit=null train.epochs=60 \\
             model.warmup_steps=0" \\
      --run "iaf: --preset binarized-mnist-iaf train.time_limit=null train.epochs=60"

Prints one row per run (steps, training seconds, test ELBO, log p(x) ± s.e., the gap between them, active
units, per layer when the model has layers) and writes ``results.json`` into ``--out``. Runs that already have a
``summary.json`` are not trained again (re-running the command only evaluates).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder holding one run folder per configuration")
    ap.add_argument("--run", action="append", required=True, metavar='"NAME: vaekit train arguments"')
    ap.add_argument("--iw-samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="threads per process")
    ap.add_argument("--limit", type=int, default=None, help="evaluate N test points drawn across the test set")
    ap.add_argument("--first", type=int, default=None, help="evaluate the first N test points (file order)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for spec in a.run:
        name, _, args = spec.partition(":")
        runs[name.strip()] = shlex.split(args)
    vaekit = [sys.executable, "-m", "vaekit.cli"]
    procs = {}
    for name, args in runs.items():
        if (out / name / "summary.json").exists():
            continue
        cmd = vaekit + ["train", "--quiet", "--out", str(out / name), *args, f"train.threads={a.threads}"]
        print("$", " ".join(cmd[2:]), flush=True)
        procs[name] = subprocess.Popen(cmd, stdout=open(out / f"{name}.train.log", "w"), stderr=subprocess.STDOUT)
    for name, p in procs.items():
        if p.wait() != 0:
            sys.exit(f"training {name} failed: see {out / (name + '.train.log')}")
    procs = {}
    for name in runs:
        cmd = (vaekit + ["evaluate", str(out / name), "--json", "--iw-samples", str(a.iw_samples),
                        "--threads", str(a.threads)] + (["--limit", str(a.limit)] if a.limit else [])
               + (["--first", str(a.first)] if a.first else []))
        print("$", " ".join(cmd[2:]), flush=True)
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            sys.exit(f"evaluating {name} failed: {stderr.strip()}")
        res = json.loads(stdout)
        res["train"] = json.loads((out / name / "summary.json").read_text())
        results[name] = res
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{'run':<12} {'steps':>7} {'train s':>8} {'test ELBO':>10} {'log p(x)':>17} {'gap':>6}  active units")
    for name, r in results.items():
        au = r.get("active_units_per_layer") or [r["active_units"]]
        print(f"{name:<12} {r['train']['steps']:>7} {r['train']['train_seconds']:>8.0f} {r['elbo']:>10.2f} "
              f"{r['log_px']:>9.2f} ± {r['log_px_stderr']:.2f} {r['log_px'] - r['elbo']:>6.2f}  {au}")
    print(f"(K = {a.iw_samples}, n = {next(iter(results.values()))['n']} test points; nats)")


if __name__ == "__main__":
    main()
