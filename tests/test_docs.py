"""The documentation that is generated from the code is current: docs/cli.md and docs/config.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_is_current():
    gen = _generator()
    stale = [str(p.relative_to(ROOT)) for p, text in gen.generated().items()
             if not p.is_file() or p.read_text(encoding="utf-8") != text]
    assert not stale, (f"{', '.join(stale)} no longer match the code (the CLI parser, the config dataclasses or "
                       f"the registries changed); regenerate with `{gen.REGENERATE}` and commit the result")


def test_reference_lists_every_command_and_key():
    """Spot checks that the walk found the commands and the keys (not only that the files match)."""
    gen = _generator()
    files = {p.name: text for p, text in gen.generated().items()}
    import vaekit.config

    for key in getattr(vaekit.config, "valid_keys", lambda: [])():
        assert f"`{key}`" in files["config.md"], key
    parser = gen._find_parser()
    for name, _, _ in gen._subcommands(parser):
        assert f"## vaekit {name}\n" in files["cli.md"], name


def test_readme_test_command_is_what_ci_runs():
    """The README's second set-up command is the line .ci/run runs (keep the two in step)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv") and "pytest" in line]
    assert len(commands) == 1, commands
    assert commands[0] in ci.splitlines(), f".ci/run does not run the README's test command: {commands[0]}"
