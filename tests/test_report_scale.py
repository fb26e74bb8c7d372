"""benchmarks/report_scale.py --quick: a synthetic run folder in the runner's layout, a report, a table and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/report_scale.py", "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["trials", "curve", "pts"] and set(lines[1]) == {"-"}
    assert lines[2].split()[0] == "200"
    data = json.loads(out.read_text())
    (row,) = data["runs"]
    assert data["budget_s"] == 60 and row["trials"] == 200 and row["curve_points"] > 0
    assert row["report_s"] > 0 and row["html_mb"] > 3  # plotly.js alone is ~4.8 MB
    assert {"load", "leaderboard", "curves", "html"} <= set(row["sections_s"])


def test_the_json_is_written_atomically_as_every_benchmark_writes_it(tmp_path, monkeypatch):
    # A run killed mid-write must leave the previous JSON, not half of a new one: the write goes through
    # common.write_json's atomic writer (a temporary file renamed over the old one).
    import ltrans.files

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report_scale

    row = {"trials": 200, "curve_points": 1600, "report_s": 2.0, "html_mb": 5.0, "within_budget": True,
           "sections_s": {"load": 0.5, "html": 1.0}}
    monkeypatch.setattr(report_scale, "measure", lambda n, folder: row | {"trials": n})
    written, real = [], ltrans.files.atomic_write_text

    def recorded(path, text):
        written.append(path)
        real(path, text)

    monkeypatch.setattr(ltrans.files, "atomic_write_text", recorded)
    out = tmp_path / "bench" / "report_scale.json"
    report_scale.main(["--quick", "--json", str(out)])
    assert written == [out]
    assert json.loads(out.read_text()) == {"budget_s": 60.0, "runs": [row]}
