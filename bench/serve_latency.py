"""Loopback load benchmark of `vaekit serve`: decode requests per second and p50/p99 latency at 1 and 32
concurrent clients.

Starts `vaekit serve RUN` on 127.0.0.1 (a free port, in its own process so the clients do not share its
interpreter), waits for it, warms it up, then sends POST /api/decode requests (one random latent vector each,
u ~ N(0, I)) from C concurrent clients until ``--requests`` are answered or ``--seconds`` have passed, for each C.
Only 127.0.0.1 is ever contacted. Every answer must be 200; latency is measured at the client (request sent to
body read).

  python bench/serve_latency.py runs/digits-quick             # 1 and 32 clients, at most 2000 requests / 20 s each
  python bench/serve_latency.py RUN --concurrency 1 4 32 --requests 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import numpy as np

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run: str, port: int, device: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vaekit.cli", "serve", run, "--host", HOST, "--port", str(port), "--device", device]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(httpx, base: str, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited ({proc.returncode}): {proc.stderr.read().strip()}")
        try:
            return httpx.get(base + "/api/info", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"the server did not answer within {timeout:.0f} s")


async def load(httpx, base: str, dim: int, clients: int, requests: int, seconds: float) -> dict:
    """C clients in one event loop, each sending one decode request at a time; latencies in ms."""
    rng = np.random.default_rng(0)
    bodies = [{"u": [rng.standard_normal(dim).round(4).tolist()]} for _ in range(256)]
    lat: list[float] = []
    sent = 0
    stop = time.monotonic() + seconds

    async def client(c) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < stop:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            r = await c.post(base + "/api/decode", json=body)
            r.read()
            lat.append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200:
                raise RuntimeError(f"decode answered {r.status_code}: {r.text[:200]}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {"clients": clients, "requests": len(a), "seconds": wall, "rps": len(a) / wall,
            "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder written by `vaekit train`")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="concurrent clients, one pass each")
    ap.add_argument("--requests", type=int, default=2000, help="at most this many requests per pass")
    ap.add_argument("--seconds", type=float, default=20.0, help="at most this long per pass")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if not (1 <= a.requests <= 100_000 and 0 < a.seconds <= 300 and all(1 <= c <= 256 for c in a.concurrency)):
        sys.exit("bounds: 1 <= --requests <= 100000, 0 < --seconds <= 300, 1 <= --concurrency <= 256")
    import httpx

    port = free_port()
    base = f"http://{HOST}:{port}"
    proc = start_server(a.run, port, a.device)
    try:
        info = wait_ready(httpx, base, proc)
        dim = info["latent_dim"]
        asyncio.run(load(httpx, base, dim, 4, 100, 10))  # warm-up
        print(f"vaekit serve {a.run} ({info['family']}, {dim} latents, images {'x'.join(map(str, info['data_shape']))})"
              f" on {HOST}, {os.cpu_count()} CPUs; POST /api/decode, one vector per request")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for c in a.concurrency:
            r = asyncio.run(load(httpx, base, dim, c, a.requests, a.seconds))
            print(f"{r['clients']:>7} {r['requests']:>8} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}",
                  flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
