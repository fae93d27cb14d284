"""The tutorial notebooks in docs/notebooks run from top to bottom without an error.

Each runs in a fresh kernel in a scratch folder, on a small budget (well under a minute on 2 CPU cores). The
notebooks are committed with their outputs, which the documentation site shows; after changing one, re-execute
and save them all with ``python tests/test_notebooks.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def execute(path: Path, cwd: Path):
    """Run the notebook at ``path`` in a new python3 kernel with ``cwd`` as its folder; returns the executed
    notebook (nbformat) or raises nbclient's CellExecutionError naming the failing cell."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(cwd)}})
    backend = os.environ.pop("MPLBACKEND", None)  # the kernel draws inline, as in Jupyter (CI sets Agg)
    try:
        client.execute()
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    for cell in nb.cells:  # nothing that differs from run to run besides the outputs
        cell.get("metadata", {}).pop("execution", None)
    return nb


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2, NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path):
    pytest.importorskip("nbclient", reason="executing the notebooks needs nbclient: pip install -e '.[docs]'")
    pytest.importorskip("ipykernel", reason="executing the notebooks needs ipykernel: pip install -e '.[docs]'")
    start = time.perf_counter()
    nb = execute(path, tmp_path)
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert seconds < 180, f"{path.name} took {seconds:.0f} s; keep the tutorials' budgets small"


if __name__ == "__main__":  # re-execute every notebook and save it with its outputs
    import tempfile

    import nbformat

    for p in NOTEBOOKS:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            executed = execute(p, Path(tmp))
        nbformat.write(executed, p)
        print(f"{p.relative_to(ROOT)}: executed in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
