"""The figures module leaves matplotlib's backend alone (docs/method.md, section 6: Figs. 2-4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter, so the backend it reports is the one chosen by MPLBACKEND alone.
CHECK = textwrap.dedent(
    """
    import json, sys
    import matplotlib

    before = matplotlib.get_backend()
    import {module}
    after_import = matplotlib.get_backend()

    import numpy as np
    from stemstore.analysis.plots import plot_importance, plot_oob_curves, plot_pca

    out = sys.argv[1]
    plot_importance([0.3, 0.1, 0.2], [0.01, 0.02, 0.01], ["a", "b", "c"], path=out + "/fig2.png")
    plot_oob_curves([0.3, 0.2, 0.25], [0.3, 0.2], n_selected_interp=2, path=out + "/fig3.png")
    rng = np.random.default_rng(0)
    plot_pca(rng.normal(size=(10, 3)), rng.normal(1, 1, size=(8, 3)), ["x", "y", "z"],
             path=out + "/fig4.png")
    print(json.dumps({{"before": before, "after_import": after_import,
                      "after_drawing": matplotlib.get_backend(),
                      "pyplot_imported": "matplotlib.pyplot" in sys.modules}}))
    """
)


@pytest.mark.parametrize("module", ["stemstore.analysis.plots", "stemstore.cli.app"])
def test_importing_and_drawing_keeps_the_sessions_backend(module, tmp_path):
    """A notebook's backend (here svg, which is not Agg, so a switch would show) stays as it was."""
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["before"] == "svg"
    assert seen["after_import"] == "svg"
    assert seen["after_drawing"] == "svg"
    assert not seen["pyplot_imported"]
    for name in ("fig2.png", "fig3.png", "fig4.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
