"""Named run configs (one YAML file each, whose ``description:`` says what it is); listed without importing
torch, so `vaekit presets` is fast."""

from __future__ import annotations

from importlib import resources

import yaml

__all__ = ["list_presets"]


def list_presets() -> dict[str, str]:
    """Preset name -> its description (the file's ``description:``, whole)."""
    out = {}
    for f in sorted(resources.files("vaekit.presets").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            d = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
            out[f.name[:-5]] = str(d.get("description", "")).strip()
    return out
