"""`vaekit serve`: explore a trained run in the browser (needs the serve extra: pip install 'vaekit[serve]')."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from typing import Callable

__all__ = ["register", "build_explorer", "listen_socket"]

_LOOPBACK_NAMES = ("localhost",)


def register(sub: "argparse._SubParsersAction") -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add `serve` to ``sub``; return {command name: handler}."""
    s = sub.add_parser("serve", help="explore a trained model in the browser (pip install 'vaekit[serve]')",
                       description="Serve a web page and an HTTP API (OpenAPI schema at /openapi.json) to explore a run: "
                                   "latent sliders sorted by KL, the 2-D map of test points, interpolation, "
                                   "encoding uploaded or drawn images, samples, Ladder layer resampling. "
                                   "Binds to 127.0.0.1; the page needs no network.")
    s.add_argument("run_dir")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but a loopback address exposes the model to the network")
    s.add_argument("--port", type=int, default=8000, help="TCP port")
    s.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda, cuda:1, auto)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--data-dir", default=None)
    s.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; one request is one small batch, which a second thread rarely speeds up")
    s.add_argument("--max-points", type=int, default=2000, help="test points on the map (a fixed-seed subset)")
    return {"serve": _cmd_serve}


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn would bind it; a ValueError naming the address and what to
    do when it cannot be (the port is in use, the address is not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"cannot listen on {shown}: the port is already in use (another server?); stop that "
                             f"server or choose another --port") from None
        if e.errno == errno.EACCES:
            raise ValueError(f"cannot listen on {shown}: permission denied (ports below 1024 need privileges); "
                             f"choose a --port above 1023") from None
        why = (e.strerror or str(e)).rstrip(".")
        raise ValueError(f"cannot listen on {shown}: {why}; check --host and --port") from None
    return sock


def build_explorer(run_dir: str, checkpoint: str = "best", device: str = "cpu", data_dir: str | None = None,
                   max_points: int = 2000):
    """An ``Explorer`` for a run folder: the model on ``device`` and its test split (no map if the data are absent)."""
    import logging
    from pathlib import Path

    from vaekit.runs import load_run, load_test_data, resolve_device
    from vaekit.serve.explorer import Explorer

    cfg, model, _ = load_run(run_dir, checkpoint)
    model = model.to(resolve_device(device))
    try:
        x, y = load_test_data(cfg, data_dir)
    except (FileNotFoundError, ValueError) as e:
        logging.getLogger(__name__).warning("no test data for the map (%s); serving without it", e)
        x = y = None
    return Explorer(model, x, y, name=Path(run_dir).name, family=cfg.model.family, binarize=cfg.data.binarize != "none",
                    max_points=max_points)


def _cmd_serve(a: argparse.Namespace) -> int:
    try:
        import uvicorn

        from vaekit.serve.app import create_app
    except ImportError as e:
        raise ValueError(f"vaekit serve needs the serve extra ({e.name} is missing): pip install 'vaekit[serve]'") from None
    if not 0 < a.port < 65536:
        raise ValueError(f"--port must be 1..65535, got {a.port}")
    if a.max_points < 0:
        raise ValueError("--max-points must be at least 0")
    if a.threads < 1:
        raise ValueError("--threads must be at least 1")
    import torch

    torch.set_num_threads(a.threads)  # this process is the server's own
    sock = listen_socket(a.host, a.port)  # a port in use is refused before the model is loaded
    try:
        explorer = build_explorer(a.run_dir, a.checkpoint, a.device, a.data_dir, a.max_points)
        if _is_loopback(a.host):
            hosts: list[str] | None = ["127.0.0.1", "localhost", "[::1]", a.host]
        else:
            print(f"vaekit serve: warning: binding {a.host} exposes the model to the network (no authentication)",
                  file=sys.stderr)
            hosts = None
        app = create_app(explorer, allowed_hosts=hosts)
        shown = f"[{a.host}]" if ":" in a.host else a.host
        print(f"serving {a.run_dir} at http://{shown}:{a.port}/ (OpenAPI schema at /openapi.json); Ctrl-C stops",
              file=sys.stderr)
        # limit_concurrency: connections + requests in flight beyond it get 503 instead of queueing without bound
        config = uvicorn.Config(app, host=a.host, port=a.port, log_level="warning", server_header=False,
                                limit_concurrency=256)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C is how a server is stopped (uvicorn.run swallows it too)
            pass
    finally:
        sock.close()
    return 0
