"""The run folder as one unit: which folders a new run or a resume may use, what a resume may change, and the
first files of a new run (``vaekit.runfolder`` holds the lock and the marker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaekit.config import ConfigError, RunConfig, config_to_dict, dump_config, load_config
from vaekit.training.checkpoint import CheckpointError
from vaekit.utils import atomic_write_text

__all__ = ["RESUMABLE_PREFIXES", "RESUMABLE_KEYS", "check_resume_config", "start_fresh", "check_folder",
           "check_run_folder"]


# what --resume may change: how long and how to train, not what is trained on what
RESUMABLE_PREFIXES = ("train.", "eval.")
RESUMABLE_KEYS = ("data.dir", "name")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k.endswith("_options"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def check_resume_config(old: RunConfig, new: RunConfig) -> None:
    """ConfigError if ``new`` changes anything of ``old`` that a resumed run cannot change (the model, the data,
    the seed): only ``train.*``, ``eval.*``, ``data.dir`` and ``name`` may differ."""
    a, b = _flat(config_to_dict(old)), _flat(config_to_dict(new))
    for key in b:
        if key in RESUMABLE_KEYS or key.startswith(RESUMABLE_PREFIXES):
            continue
        if a.get(key) != b[key]:
            raise ConfigError(f"--resume cannot change {key} ({a.get(key)!r} -> {b[key]!r}): the checkpoint holds "
                              f"a model trained with the old value; start a new run with --out instead")


def start_fresh(run_dir: Path, cfg: RunConfig) -> None:
    """A new run, or one killed before its first checkpoint: clear vaekit's own leftovers (never other files),
    mark the folder as a run and write its config."""
    from vaekit.runfolder import RUN_FILES, write_marker

    write_marker(run_dir)
    for name in RUN_FILES:
        if name != "config.yaml" and (run_dir / name).is_file():
            (run_dir / name).unlink()
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))


def check_folder(run_dir: Path, resume: bool, cfg: RunConfig, locked: bool = False) -> str:
    """The folder's state (``folder_state``) once it is known to be usable as asked; nothing is written."""
    from vaekit.runfolder import RunFolderError, check_not_in_use, describe_foreign, folder_state

    state = folder_state(run_dir)
    if state == "foreign":
        raise RunFolderError(describe_foreign(run_dir))
    if state in ("run", "new-run") and not locked:
        check_not_in_use(run_dir)
    if resume:
        if state in ("missing", "empty"):
            raise RunFolderError(f"cannot resume: {str(run_dir)!r} is not a run folder (no vaekit run there)")
        if (run_dir / "config.yaml").is_file():
            check_resume_config(load_config(run_dir / "config.yaml"), cfg)
        if state == "run" and not (run_dir / "last.safetensors").is_file():
            raise CheckpointError(f"cannot resume: {str(run_dir / 'last.safetensors')!r} not found (only 'best' "
                                  f"is left); evaluate the run, or start a new one with --out")
    elif state == "run":
        raise RunFolderError(f"run folder {str(run_dir)!r} already holds a run; use --resume {run_dir} or choose "
                             f"another --out")
    return state


def check_run_folder(run_dir: str | Path, *, locked: bool = False) -> str:
    """Check that a new run may be written into ``run_dir`` (missing, empty, or a vaekit run killed before its
    first checkpoint; not in use, not someone's own files, not a finished run); returns its ``folder_state``."""
    return check_folder(Path(run_dir), False, RunConfig(), locked=locked)
