"""`vaekit` command line: parse, build a config, call the library, set the exit code.

Exit codes: 0 success, 2 bad input (a one-line message, no traceback), 1 training that could not go on.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import shutil
import sys

__all__ = ["main"]

# modules that add sub-commands: each has register(subparsers) -> {command: handler(args) -> exit code};
# heavy imports stay inside the handlers so `vaekit --help` is fast
_EXTENSIONS = ("vaekit.cli.train", "vaekit.cli.evaluate", "vaekit.cli.images", "vaekit.cli.catalog",
               "vaekit.cli.plots", "vaekit.cli.apps", "vaekit.cli.compare", "vaekit.cli.serve",
               "vaekit.cli.disentangle", "vaekit.cli.restore")
_HANDLERS: dict = {}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``: appended as "(default: X)" unless its help already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:  # -h and -V have no default to show
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)".strip()


# help for the options many commands share, where a command gives none
_COMMON_HELP = {
    "run_dir": "run folder written by `vaekit train`", "run_dirs": "run folders written by `vaekit train`",
    "checkpoint": "the run's checkpoint to use", "data_dir": "data directory (default $VAEKIT_DATA_DIR)",
    "split": "data split", "json": "print JSON only", "seed": "random seed", "n": "number of images",
    "lr": "Adam learning rate of the per-point optimisation", "what": "what to embed",
    "normal_split": "split of the normal data the threshold is set on", "iw_samples": "importance samples K",
    "elbo_samples": "samples per ELBO estimate",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching: ``--data`` is never read as an abbreviation of ``--data-dir``.

    ``keys``: the config sections whose keys the command takes; its help ends with them, generated from their
    declarations (``vaekit.config_help``) when the help is shown, laid out as generated."""

    def __init__(self, *args, keys: tuple[str, ...] = (), **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.keys = keys

    def format_help(self) -> str:
        if not self.keys:
            return super().format_help()
        from vaekit.config_help import keys_help

        width = max(60, min(120, shutil.get_terminal_size().columns - 2))
        return super().format_help().rstrip("\n") + "\n\n" + keys_help(self.keys, width)


def _parser() -> argparse.ArgumentParser:
    from vaekit import __version__

    p = _Parser(prog="vaekit", description="Train, measure and use variational autoencoders.",
                formatter_class=HelpFormatter)
    p.add_argument("-V", "--version", action="version", version=f"vaekit {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for ext in _EXTENSIONS:  # each command lives in its own module
        _HANDLERS.update(importlib.import_module(ext).register(sub))
    for command in sub.choices.values():  # sub-commands (also the extensions') show their defaults too
        command.formatter_class = HelpFormatter
        for action in command._actions:  # noqa: SLF001 - argparse offers no public list of a parser's actions
            if not action.help and action.default is not argparse.SUPPRESS:  # argparse shows nothing without help
                action.help = _COMMON_HELP.get(action.dest, action.dest.replace("_", " "))
    return p


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


_ERRNO_HINTS = {
    errno.ENOSPC: ("no space left on the device", "free some space and run the command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run the command again"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder"),
    errno.EACCES: ("permission denied", "choose a folder you can write to"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to"),
    errno.EEXIST: ("a file of that name already exists where a folder is needed", "choose another path"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("it is a directory, not a file", "give a file name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do; files already on disk are unchanged
    (every write goes to a temporary file first)."""
    if e.errno is None or e.errno not in _ERRNO_HINTS:
        text = e.strerror or str(e) or type(e).__name__
        return f"{text}{f' ({str(e.filename)!r})' if e.filename else ''}"
    what, todo = _ERRNO_HINTS[e.errno]
    where = f" at {str(e.filename)!r}" if e.filename else ""
    kept = "; files already there were not changed" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{what}{where}{kept}; {todo}"


def _lazy_errors(module: str, name: str) -> tuple[type[BaseException], ...]:
    """(the exception class ``module.name``,) if that module has been imported, else () — an exception of a
    module never imported cannot have been raised, and `vaekit presets` must not import torch to find out."""
    mod = sys.modules.get(module)
    return (getattr(mod, name),) if mod is not None else ()


def _in_process_group() -> bool:
    """Whether this process is in a torch.distributed group (without importing torch when nothing has)."""
    d = sys.modules.get("torch.distributed")
    return d is not None and d.is_available() and d.is_initialized()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaekit`` command."""
    parser = _parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 2
    _setup_logging(getattr(a, "quiet", False) or getattr(a, "json", False))
    if a.command not in ("datasets", "presets"):  # an application may tune its process; the library never does
        from vaekit.tuning import flush_denormals

        flush_denormals()  # before the first parallel op, so every OpenMP thread inherits it

    handlers = dict(_HANDLERS)
    had_group, ok = _in_process_group(), False
    try:
        code = handlers[a.command](a)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at interpreter exit
        ok = True
        return code
    except BrokenPipeError:  # `vaekit datasets | head -1`: the reader has gone; stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the signal ended
    except (ValueError, *_lazy_errors("vaekit.training.checkpoint", "CheckpointError")) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"vaekit {a.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing file, a read-only folder, a full disk, a path that is a file or a folder
        print(f"vaekit {a.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyError as e:  # a file missing an entry it must have; name what is missing
        print(f"vaekit {a.command}: error: missing entry {e} in an input file (written by another program or "
              f"an incompatible vaekit?)", file=sys.stderr)
        return 2
    except _lazy_errors("vaekit.training.trainer", "TrainingError") as e:
        print(f"vaekit {a.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vaekit {a.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if not had_group and _in_process_group():  # the torchrun group this command joined, not a caller's
            from vaekit.training.distributed import leave

            leave(wait=ok)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
