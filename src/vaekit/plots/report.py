"""The run report: one self-contained HTML page (config, metrics table, every figure embedded as a data: URI),
readable offline and safe to mail around — no scripts, no external files.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any


from vaekit.utils import read_json

__all__ = ["write_report", "check_report_path", "render_report", "metrics_rows"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums} td,th{padding:.25em .9em;border-bottom:1px solid #eee;
text-align:left} td.v{text-align:right;font-family:ui-monospace,monospace}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.92em} pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
.muted{color:#777}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.4g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.3f}"
    return str(v)


def _percent(v: Any) -> str | None:
    return f"{100 * v:.2f} %" if isinstance(v, (int, float)) else None


def metrics_rows(run_dir: str | Path) -> list[tuple[str, str]]:
    """(name, value) rows from summary.json and the last metrics.jsonl record; nats per example."""
    from vaekit.plots.curves import load_metrics

    run_dir = Path(run_dir)
    last = load_metrics(run_dir)[-1]
    rows: list[tuple[str, Any]] = []
    sp = run_dir / "summary.json"
    if sp.is_file():
        s = read_json(sp)
        rows += [("training steps", s.get("steps")), ("epochs", s.get("epochs")), ("ended by", s.get("stopped")),
                 ("training time (s)", s.get("train_seconds")), ("best validation ELBO (nats)", s.get("best_val_elbo")),
                 ("best validation bound of the training objective (nats)", s.get("best_val_bound")),
                 ("best validation accuracy of q(y|x)", _percent(s.get("best_val_accuracy"))),
                 ("best step", s.get("best_step")), ("non-finite steps skipped", s.get("bad_steps"))]
        t = s.get("test") or {}
        if "elbo" in t:
            rows += [(f"test ELBO (nats, n = {t.get('n')})", f"{_fmt(t['elbo'])} ± {_fmt(t.get('elbo_stderr', float('nan')))}"),
                     ("test −log p(x|z) (nats)", -t["log_px_z"] if "log_px_z" in t else None),
                     ("test KL (nats)", t.get("kl"))]
        if "error" in t:  # a model with a classifier q(y|x) (M2)
            rows.append((f"test classification error of q(y|x) (n = {t.get('n')})", _percent(t["error"])))
        if "knn_recon_accuracy" in t:
            rows.append((f"test reconstructions a {t.get('k')}-NN on training inputs labels correctly",
                         f"{100 * t['knn_recon_accuracy']:.1f} % (test inputs themselves: "
                         f"{100 * t['knn_input_accuracy']:.1f} %; n = {t.get('n_test')})"))
    else:
        rows.append(("summary", "summary.json not found: the run has not finished"))
    rows += [("last record: step", last.get("step")), ("last train loss (nats)", last.get("loss")),
             ("last validation ELBO (nats)", last.get("val_elbo")), ("last validation KL (nats)", last.get("val_kl")),
             ("training speed (samples/s)", round(last["samples_per_s"]) if "samples_per_s" in last else None)]
    if isinstance(last.get("sigma"), (int, float)):
        rows.append(("learned σ", last["sigma"]))
    if last.get("val_kl_dims"):
        k = last["val_kl_dims"]
        rows.append(("latent dims with KL > 0.01 nats", f"{sum(v > 0.01 for v in k)} of {len(k)}"))
    return [(n, _fmt(v)) for n, v in rows if v is not None]


def _data_uri(path: Path) -> str:
    mime = "image/gif" if path.suffix.lower() == ".gif" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def render_report(run_dir: str | Path, figures: dict[str, Path], skipped: dict[str, str] | None = None) -> str:
    """The HTML text of a run's report: a metrics table (id="metrics"), the figures, skipped kinds, the config."""
    from vaekit.plots.run_figures import CAPTIONS

    run_dir = Path(run_dir)
    esc = html.escape
    cfg_path = run_dir / "config.yaml"
    cfg_text = cfg_path.read_text(encoding="utf-8", errors="replace") if cfg_path.is_file() else "(config.yaml not found)"
    data_line = ""
    for doc_name in ("best.json", "last.json"):
        if (run_dir / doc_name).is_file():
            d = read_json(run_dir / doc_name)
            d = d.get("data", {}) if isinstance(d, dict) else {}
            data_line = (f"data: {d.get('name')} {tuple(d.get('shape', []))}, {d.get('n_train')} training examples"
                         if d else "")
            break
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>vaekit run report: {esc(run_dir.name)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Run report: {esc(run_dir.name)}</h1>",
             f"<p class=\"muted\">{esc(str(run_dir.resolve()))}<br>{esc(data_line)}</p>",
             "<h2>Metrics</h2>", "<table id=\"metrics\"><tbody>"]
    parts += [f"<tr><th>{esc(n)}</th><td class=\"v\">{esc(v)}</td></tr>" for n, v in metrics_rows(run_dir)]
    parts += ["</tbody></table>", "<h2>Figures</h2>"]
    for name, path in figures.items():
        parts.append(f"<figure id=\"fig-{esc(name)}\"><img src=\"{_data_uri(Path(path))}\" alt=\"{esc(name)}\">"
                     f"<figcaption><b>{esc(name)}</b>: {esc(CAPTIONS.get(name, ''))}</figcaption></figure>")
    if skipped:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in skipped.items()]
        parts.append("</ul>")
    parts += ["<h2>Configuration</h2>", f"<pre>{esc(cfg_text)}</pre>",
              "<p class=\"muted\">Written by vaekit; figures can be redrawn with <code>vaekit plot RUN_DIR --kind all"
              "</code>.</p></body></html>\n"]
    return "\n".join(parts)


def write_report(run_dir: str | Path, figures: dict[str, Path], skipped: dict[str, str],
                 out: str | Path | None = None) -> Path:
    """Write the self-contained report page of ``run_dir`` (default ``run_dir/report.html``) from drawn figures."""
    from vaekit.utils import atomic_write_text

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    check_report_path(out)
    atomic_write_text(out, render_report(run_dir, figures, skipped))
    return out


def check_report_path(out: str | Path) -> None:
    """ValueError unless ``out`` names an .html file."""
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report file {str(out)!r} must end in .html")
