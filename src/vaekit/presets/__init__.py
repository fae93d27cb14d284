"""Named run configs (one YAML file each); listed without importing torch, so `vaekit presets` is fast."""

from __future__ import annotations

from importlib import resources

__all__ = ["list_presets"]


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the YAML file's first comment line)."""
    out = {}
    for f in sorted(resources.files("vaekit.presets").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            lines = f.read_text().splitlines()
            out[f.name[:-5]] = lines[0].lstrip("# ").strip() if lines else ""
    return out
