"""The report in a real browser: headless Chromium (Debian package `chromium`) loads a copy of report.html with a
probe script added, and every image must decode (naturalWidth > 0) and the metrics table must be there."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images).map(i => (i.complete ? i.naturalWidth : 0));
  const t = document.getElementById("metrics");
  const p = document.createElement("pre");
  p.id = "probe";
  p.textContent = JSON.stringify({widths: imgs, rows: t ? t.rows.length : -1});
  document.body.appendChild(p);
});
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    return exe


def test_every_image_loads_and_the_metrics_table_is_present(tiny_run, tmp_path):
    exe = _chromium()
    run_dir, _ = tiny_run
    page = tmp_path / "report.html"
    page.write_text((run_dir / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m, f"probe not found in the DOM (chromium exit {out.returncode}): {out.stderr[-500:]}"
    probe = json.loads(html.unescape(m.group(1)))
    n_figures = len(list((run_dir / "figures").iterdir()))
    assert len(probe["widths"]) == n_figures == 10
    assert all(w > 0 for w in probe["widths"]), probe["widths"]
    assert probe["rows"] >= 10
