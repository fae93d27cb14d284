"""What users expect of a command: python -m, -V, defaults in --help, quiet closed pipes, fast listings."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

import vaekit
from vaekit.cli.core import _parser

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _py(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=120, **kw)


def test_python_dash_m_and_version():
    for flag in ("-V", "--version"):
        r = _py("-m", "vaekit", flag)
        assert r.returncode == 0 and r.stdout.strip() == f"vaekit {vaekit.__version__}"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_of_every_command_shows_its_default():
    parser = _parser()
    missing = []
    for name, sub in [("vaekit", parser), *_subparsers(parser).items()]:
        sub.format_help()  # every help page renders (defaults are %-formatted into it)
        fmt = sub._get_formatter()
        for action in sub._actions:
            if action.default is argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            if not action.option_strings and action.nargs not in ("?", "*"):
                continue  # a required positional has no default
            if "default" not in fmt._get_help_string(action):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    assert len(_subparsers(parser)) >= 10
    text = _subparsers(parser)["evaluate"].format_help()
    assert "(default: test)" in text and "(default: best)" in text


def test_a_closed_pipe_exits_quietly():
    p = subprocess.Popen([sys.executable, "-m", "vaekit", "datasets"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()  # the reader is gone before the first line is written, as with `| head -1` at once
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert err == ""


@pytest.mark.parametrize("argv", [["presets"], ["datasets"], ["--help"], ["train", "--help"], ["-V"]])
def test_listings_and_help_do_not_import_torch(argv):
    code = ("import sys, contextlib, io\nfrom vaekit.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))")
    r = _py("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
