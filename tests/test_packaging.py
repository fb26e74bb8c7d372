"""The wheel ships every package of the tree, analysis/ included (as ltrans.analysis)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ltrans").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "ltrans.analysis" in listed and config["package-dir"]["ltrans.analysis"] == "analysis"


def test_importing_ltrans_does_not_import_ray_or_plotly():
    import subprocess
    import sys

    code = ("import sys, ltrans, ltrans.data, ltrans.models, ltrans.pipeline; "
            "print(sorted(m for m in ('ray', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
