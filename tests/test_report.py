"""`ltrans report` over a real smoke sweep, opened in a real headless Chromium.

The run folder comes from `ltrans sweep run sweeps/demo.yaml --smoke-test` (built once for this
module). Chromium is Debian's, installed by the session fixture below when missing (as root, ~15-45 s);
its screenshot lands in out/test-artifacts/report-smoke.png for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from ltrans.analysis import aggregate as agg
from ltrans.analysis.report import write_report
from ltrans.analysis.runs import load, read_runs

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "out" / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--enable-unsafe-swiftshader", "--hide-scrollbars"]  # software WebGL for Scattergl/Parcoords
# Put before plotly.js: collects console errors and uncaught exceptions into the DOM, where --dump-dom shows them.
ERROR_PROBE = """<script>window.__errors = [];
const __error = console.error; console.error = function () { window.__errors.push([...arguments].join(' ')); };
window.addEventListener('error', e => window.__errors.push('uncaught: ' + e.message));
window.addEventListener('load', () => setTimeout(() => { const p = document.createElement('pre');
  p.id = 'console-errors'; p.textContent = JSON.stringify(window.__errors); document.body.appendChild(p); }, 2000));
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, installed from Debian with apt-get when missing (skips only if apt cannot)."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is missing and cannot be installed here (needs apt-get as root): "
                    "apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
        proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            pytest.skip(f"apt-get install chromium failed: {proc.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.fail("apt-get installed chromium but it is not on PATH")


def browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                           *args, page.as_uri()], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, _session_cache) -> Path:
    """A finished smoke sweep: `ltrans sweep run sweeps/demo.yaml --smoke-test --out DIR`."""
    run = tmp_path_factory.mktemp("report") / "demo-smoke"
    env = {**os.environ, "LTRANS_RAY_CPUS": "2"}
    proc = subprocess.run([sys.executable, "-m", "ltrans", "sweep", "run", "sweeps/demo.yaml", "--smoke-test",
                           "--out", str(run)], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def report(smoke_run, tmp_path_factory, _session_cache):
    """The smoke run's report with examples (retrains the best bridge once, then cached)."""
    return write_report([smoke_run], tmp_path_factory.mktemp("html") / "report.html", store_root=_session_cache,
                        examples=True)


@pytest.mark.slow
def test_tables_hold_the_numbers_of_trials_parquet(smoke_run):
    parquet = pd.read_parquet(smoke_run / "trials.parquet").set_index("number")
    frame = load(smoke_run).set_index("number")
    for column in ("status", "transfer_a_to_b", "transfer_b_to_a", "fid_a_to_b", "train_seconds"):
        assert frame[column].equals(parquet[column]), column
    results = read_runs([smoke_run])
    board = agg.leaderboard(results)
    assert len(board) == (parquet["status"] == "ok").sum()  # one seed: every ok trial is its own setting
    for row in board.itertuples():
        source = parquet.loc[int(row.trials)]
        assert (row.transfer_a_to_b_mean, row.transfer_b_to_a_mean, row.fid_b_to_a_mean) == (
            source.transfer_a_to_b, source.transfer_b_to_a, source.fid_b_to_a)
    assert board["transfer_mean_mean"].is_monotonic_decreasing
    counts = agg.status_counts(results).iloc[0]
    assert {s: counts[s] for s in agg.STATUSES} == {s: int((parquet["status"] == s).sum()) for s in agg.STATUSES}


@pytest.mark.slow
def test_report_is_one_offline_file_with_plotly_once_and_examples_embedded(report):
    page = report.path.read_text()
    assert page.count("plotly.js v") == 1  # the bundle's banner: embedded once
    assert not re.search(r"<(script|link|img|audio)[^>]+(src|href)=['\"]?https?:", page)  # nothing fetched
    assert len(report.plot_ids) >= 8 and all(f"id=\"{pid}\"" in page for pid in report.plot_ids)
    examples = next(s for s in report.sections if s.key == "examples")
    assert examples.html.count("src='data:image/png;base64,") == 2  # A->B and B->A grids of the best bridge


@pytest.mark.slow
def test_report_renders_in_headless_chromium_without_errors(report, chromium, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.path.read_text().replace("<head>", "<head>" + ERROR_PROBE, 1))
    proc = browse(chromium, probed, tmp_path / "profile-dom", "--dump-dom")
    dom = proc.stdout
    errors = re.search(r'<pre id="console-errors">(.*?)</pre>', dom, re.DOTALL)
    assert errors, f"the page never finished loading: {proc.stderr[-2000:]}"
    assert json.loads(errors.group(1).replace("&quot;", '"')) == []
    starts = [(m.group(1), m.start()) for m in re.finditer(r'<div id="([\w-]+)" class="plotly-graph-div', dom)]
    assert [pid for pid, _ in starts] == report.plot_ids
    for (pid, start), end in zip(starts, [s for _, s in starts[1:]] + [len(dom)]):
        segment = dom[start:end]
        assert "plot-container" in segment and "main-svg" in segment, f"{pid} was not drawn"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-smoke.png"
    browse(chromium, report.path, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,5600")
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").resize((140, 560)).getcolors(maxcolors=1 << 16)
    assert image.size == (1400, 5600) and (colours is None or len(colours) > 50)  # a page, not a blank


@pytest.mark.slow
def test_cli_writes_the_report_into_the_run_folder_and_reuses_cached_examples(smoke_run, report, _session_cache):
    from ltrans.cli import cli

    result = CliRunner().invoke(cli, ["--cache-dir", str(_session_cache), "report", "--examples", str(smoke_run)],
                                obj={})
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"report: {smoke_run / 'report.html'}")
    again = (smoke_run / "report.html").read_text()
    assert again.count("src='data:image/png;base64,") == 2
    assert len(list((_session_cache / "report_examples").glob("mnist_mnist-*"))) == 1  # retrained once, cached
