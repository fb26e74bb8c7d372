"""analysis/: tables and figures on small run folders whose numbers are known by construction.

Each folder is written in the runner's layout (sweep.yaml, provenance.json, trials.parquet with
config/* columns, curves.parquet), so these tests read files exactly as ``ltrans report`` does.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from ltrans.analysis import aggregate as agg
from ltrans.analysis import figures as fr
from ltrans.analysis import figures_training as ft
from ltrans.analysis.report import write_report
from ltrans.analysis.runs import load, read_runs

from ltrans.errors import UserError

SPACE = {"bridge.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "bridge.width": {"type": "categorical", "choices": [256, 64, 128]}}


def trial(number, pair="mnist_animals", status="ok", seed=0, lr=1e-3, width=64, betas=(0.005, 1.0, 0.05),
          method="bridge", n_sup=-1, a_to_b=0.8, b_to_a=0.6, train_seconds=10.0) -> dict:
    """One trials.parquet row as ``ltrans.sweep.results.trial_row`` lays it out."""
    row = {"number": number, "tune_trial_id": f"t{number}", "content_key": f"k{number}", "status": status,
           "reason": "" if status == "ok" else f"{status} on purpose", "pair": pair, "seed": seed, "attempt": 1,
           "wall_s": train_seconds + 2, "node_ip": "127.0.0.1", "train_seconds": train_seconds}
    if status == "ok":
        row |= {"transfer_a_to_b": a_to_b, "transfer_b_to_a": b_to_a, "transfer_mean": (a_to_b + b_to_a) / 2,
                "fid_a_to_b": 10.0 * number, "fid_b_to_a": 20.0 + number,
                "confusion_a_to_b": list(np.eye(10, dtype=int).ravel() * 5),
                "confusion_b_to_a": list((np.ones((10, 10), dtype=int) * 2).ravel())}
    config = {"pair": pair, "seed": seed, "method": method, "base": "tiny", "bridge.lr": lr, "bridge.width": width,
              "bridge.beta_kl": betas[0], "bridge.beta_swd": betas[1], "bridge.beta_cls": betas[2],
              "bridge.n_sup": n_sup}
    return row | {f"config/{k}": v for k, v in config.items()}


def write_run(folder, rows, curves=None, space=SPACE, name="unit"):
    """A run folder in the runner's layout; ``rows=None`` or ``curves=None`` leave that parquet file out."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "pairs": sorted({r["pair"] for r in rows or []}) or ["mnist_mnist"], "budget": 4,
            "objectives": [{"name": "transfer_mean", "direction": "maximize"}], "space": space,
            "scheduler": {"type": "asha", "metric": "loss_recon", "mode": "min", "grace_period": 50}}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec))
    (folder / "provenance.json").write_text(json.dumps({"git_sha": "abc", "machine": {"host": "h", "cpus": 2}}))
    if rows is not None:
        pd.DataFrame(rows).to_parquet(folder / "trials.parquet", index=False)
    if curves is not None:
        pd.DataFrame(curves).to_parquet(folder / "curves.parquet", index=False)
    return folder


def curve(number, steps=(50, 100, 150, 200), start=1.0):
    return [{"number": number, "tune_trial_id": f"t{number}", "step": s, "wall_s": s / 100.0,
             "loss_recon": start / (1 + s / 100), "loss_total": 2 * start / (1 + s / 100)} for s in steps]


def test_load_names_rungs_and_groups_seeds_of_one_setting(tmp_path):
    rows = [trial(0, seed=0), trial(1, seed=1), trial(2, lr=2e-3), trial(3, betas=(0.0, 0.0, 0.0)),
            trial(4, betas=(0.005, 0.0, 0.0)), trial(5, betas=(0.005, 1.0, 0.0)), trial(6, method="procrustes")]
    frame = load(write_run(tmp_path / "run", rows))
    assert list(frame["rung"]) == ["full", "full", "full", "ae", "vae", "vae+swd", "procrustes"]
    assert frame.loc[0, "config_id"] == frame.loc[1, "config_id"] != frame.loc[2, "config_id"]  # seed is not a setting
    assert (frame["run"] == "run").all() and frame["n_sup"].dtype == np.int64


def test_leaderboard_is_the_seed_mean_and_spread_best_first(tmp_path):
    rows = [trial(0, seed=0, a_to_b=0.8), trial(1, seed=1, a_to_b=0.9), trial(2, lr=5e-3, a_to_b=0.5),
            trial(3, status="pruned"), trial(4, status="failed")]
    results = read_runs([write_run(tmp_path / "run", rows)])
    board = agg.leaderboard(results)
    assert list(board["trials"]) == ["0, 1", "2"]
    assert board.loc[0, "transfer_a_to_b_mean"] == pytest.approx(0.85)
    assert board.loc[0, "transfer_a_to_b_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert math.isnan(board.loc[1, "transfer_a_to_b_std"]) and board.loc[0, "n_seeds"] == 2
    counts = agg.status_counts(results).iloc[0]
    assert (counts["ok"], counts["pruned"], counts["failed"], counts["total"]) == (3, 1, 1, 5)
    table = fr.leaderboard_figure(board, agg.searched_keys(results), "transfer_mean").data[0]
    columns = [h.strip("<b>/") for h in table.header["values"]]
    assert table.cells["values"][columns.index("transfer A→B")][0] == "0.850 ± 0.071"
    assert "lr=0.001" in table.cells["values"][-1][0]


def test_pair_matrix_puts_each_direction_in_its_cell(tmp_path):
    rows = [trial(0, pair="mnist_animals", a_to_b=0.7, b_to_a=0.6), trial(1, pair="mnist_mnist", a_to_b=0.9, b_to_a=0.8)]
    results = read_runs([write_run(tmp_path / "run", rows)])
    from ltrans.analysis.domains import pair_sides

    matrix = agg.pair_matrix(results, {p: pair_sides(p) for p in ("mnist_animals", "mnist_mnist")})
    heat = fr.pair_matrix_figure(matrix).data[0]
    cell = {(s, t): heat.z[heat.y.index(s)][heat.x.index(t)] for s in heat.y for t in heat.x}
    assert cell["mnist_vae", "animals_vae"] == 0.7 and cell["animals_vae", "mnist_vae"] == 0.6
    assert cell["mnist_vae", "mnist_vae_b"] == 0.9 and cell["mnist_vae_b", "mnist_vae"] == 0.8
    assert math.isnan(cell["animals_vae", "mnist_vae_b"])  # not a trained pair


def test_ablation_figure_draws_the_ladder_in_order_and_procrustes_on_the_same_axes(tmp_path):
    rows = [trial(0, betas=(0.005, 1.0, 0.05), a_to_b=0.9, b_to_a=0.9), trial(1, betas=(0, 0, 0), a_to_b=0.2, b_to_a=0.4),
            trial(2, betas=(0.005, 0, 0), a_to_b=0.4, b_to_a=0.4), trial(3, method="procrustes", a_to_b=0.5, b_to_a=0.5),
            trial(4, n_sup=10, a_to_b=0.6, b_to_a=0.6), trial(5, method="procrustes", n_sup=10, a_to_b=0.3, b_to_a=0.3)]
    results = read_runs([write_run(tmp_path / "run", rows)])
    ladder, budget = agg.ablation_table(results, "rung"), agg.ablation_table(results, "n_sup")
    fig = fr.ablation_figure(ladder, budget, fr.palette(["mnist_animals"]))
    by_name = {(t.name, t.xaxis): t for t in fig.data}
    bridge = by_name["mnist_animals · bridge", "x"]
    assert list(bridge.x) == ["ae", "vae", "full"] and list(bridge.y) == pytest.approx([0.3, 0.4, 0.9])
    baseline = by_name["mnist_animals · procrustes", "x"]
    assert baseline.line.dash == "dash" and list(baseline.y) == pytest.approx([0.5] * 3)
    curve_ = by_name["mnist_animals · bridge", "x2"]
    assert list(curve_.x) == ["10", "all"] and list(curve_.y) == pytest.approx([0.6, 0.9])
    assert list(by_name["mnist_animals · procrustes", "x2"].y) == pytest.approx([0.3, 0.5])


def test_a_run_of_procrustes_alone_gets_its_ablation_figure_and_report(tmp_path):
    rows = [trial(0, method="procrustes", a_to_b=0.5, b_to_a=0.7), trial(1, method="procrustes", n_sup=10,
            a_to_b=0.2, b_to_a=0.4), trial(2, status="failed")]
    run = write_run(tmp_path / "run", rows)
    results = read_runs([run])
    ladder, budget = agg.ablation_table(results, "rung"), agg.ablation_table(results, "n_sup")
    fig = fr.ablation_figure(ladder, budget, fr.palette(["mnist_animals"]))
    by_name = {(t.name, t.xaxis): t for t in fig.data}
    assert set(by_name) == {("mnist_animals · procrustes", "x"), ("mnist_animals · procrustes", "x2")}
    point = by_name["mnist_animals · procrustes", "x"]
    assert list(point.x) == ["procrustes"] and list(point.y) == pytest.approx([0.6])
    assert list(by_name["mnist_animals · procrustes", "x2"].y) == pytest.approx([0.3, 0.6])
    report = write_report([run], tmp_path / "report.html")  # `ltrans report` crashed here
    ablations = next(s for s in report.sections if s.key == "ablations")
    assert len(ablations.panels) == 1 and "procrustes" in report.path.read_text()


def test_speed_compares_stored_base_model_times_with_bridge_times(tmp_path):
    from ltrans.artifacts import Store, make_key
    from ltrans.files import atomic_write_json

    store = Store(tmp_path / "cache")  # its own: the session store holds whatever other tests trained
    record = {"name": "mnist_vae", "preset": "tiny", "train_seconds": 120.0}
    store.get_or_create(make_key("base_model", "mnist_vae", test="speed"),
                        lambda d: atomic_write_json(d / "record.json", record))
    rows = [trial(0, train_seconds=2.0), trial(1, train_seconds=4.0, lr=2e-3), trial(2, train_seconds=9.0, lr=3e-3)]
    results = read_runs([write_run(tmp_path / "run", rows)])
    from ltrans.analysis.speed import speed_table

    table, missing = speed_table(results, store.root)
    bars = {row.what: row for row in table.itertuples()}
    assert bars["mnist_vae (base model, tiny)"].seconds == 120.0
    bridge = bars["bridge: mnist_animals"]
    assert (bridge.seconds, bridge.low, bridge.high, bridge.n) == (4.0, 2.0, 9.0, 3)
    assert "animals_vae (base model, tiny)" in missing
    packed = read_runs([write_run(tmp_path / "packed", [r | {"pack_size": 3, "time_share": True} for r in rows])])
    assert "bridge: mnist_animals (packed: each its share of its pack's time)" in set(
        speed_table(packed, store.root)[0]["what"])
    older = read_runs([write_run(tmp_path / "older", [r | {"pack_size": 3} for r in rows])])
    assert "bridge: mnist_animals (packed, run before 2026-12-07: each its whole pack's time)" in set(
        speed_table(older, store.root)[0]["what"])
    fig = ft.speed_figure(table)
    assert fig.layout.xaxis.type == "log" and sorted(x for t in fig.data for x in t.x) == [4.0, 120.0]


def test_the_time_figure_counts_every_trials_time_in_finishing_order(tmp_path):
    # Trial 1 (pruned, an hour) finished first, then 2 (half an hour), then 0 (102 s): the best-so-far
    # line starts after 1.5 h at 0.9, the time of the pruned trial included.
    rows = [trial(0, a_to_b=0.5, b_to_a=0.5, train_seconds=100.0) | {"finished_at": 30.0},
            trial(1, status="pruned", train_seconds=3598.0) | {"finished_at": 10.0},
            trial(2, a_to_b=0.9, b_to_a=0.9, train_seconds=1798.0) | {"finished_at": 20.0}]
    results = read_runs([write_run(tmp_path / "run", rows)])
    fig = ft.time_figure(results.trials, "transfer_mean", "maximize", fr.palette(["mnist_animals"]))
    each, best = (next(t for t in fig.data if t.xaxis == axis) for axis in ("x", "x2"))
    assert list(best.x) == pytest.approx([1.5, 1.5 + 102 / 3600]) and list(best.y) == pytest.approx([0.9, 0.9])
    assert sorted(each.x) == [102.0, 1800.0]  # ok trials only, each at its own wall time
    # A trial with no finished_at (recovered from optuna.db) keeps its place after the one numbered
    # before it (2); the rest stay in finishing order.
    rows.append(trial(3, a_to_b=0.95, b_to_a=0.95, train_seconds=1798.0) | {"finished_at": None})
    results = read_runs([write_run(tmp_path / "run2", rows)])
    fig = ft.time_figure(results.trials, "transfer_mean", "maximize", fr.palette(["mnist_animals"]))
    best = next(t for t in fig.data if t.xaxis == "x2")
    assert list(best.x) == pytest.approx([1.5, 2.0, 2.0 + 102 / 3600])
    assert list(best.y) == pytest.approx([0.9, 0.95, 0.95])


def test_importance_finds_the_setting_that_decides_the_objective(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        lr, width = float(10 ** rng.uniform(-4, -2)), int(rng.choice([64, 128, 256]))
        acc = 0.9 - 0.3 * abs(np.log10(lr) + 3)  # only lr matters
        rows.append(trial(i, lr=lr, width=width, a_to_b=acc, b_to_a=acc))
    from ltrans.analysis.importance import importance_table

    table, skipped = importance_table(read_runs([write_run(tmp_path / "run", rows)]))
    value = dict(zip(table["setting"], table["importance"]))
    assert not skipped and value["bridge.lr"] > 0.8 > value["bridge.width"]


def test_parallel_coordinates_keep_the_sweeps_category_order_and_log_axes(tmp_path):
    rows = [trial(i, lr=10.0 ** -(2 + i % 3), width=[64, 128, 256][i % 3]) for i in range(6)]
    results = read_runs([write_run(tmp_path / "run", rows)])
    fig = ft.parallel_figure(results.ok(), agg.searched_keys(results), SPACE, "transfer_mean")
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert list(dims["width"].ticktext) == ["256", "64", "128"]  # the order sweep.yaml lists them in
    assert list(dims["lr (log)"].values) == pytest.approx([-2, -3, -4, -2, -3, -4])
    assert list(dims["transfer_mean"].values) == pytest.approx([0.7] * 6)


def test_curves_are_a_bounded_sample_with_the_best_trials_and_thinned_points(tmp_path):
    rows = [trial(i, a_to_b=0.5 + i / 1000, lr=1e-3 + i * 1e-6) for i in range(300)]
    points = [p for i in range(300) for p in curve(i, steps=range(10, 1010, 10))]
    results = read_runs([write_run(tmp_path / "run", rows, points)])
    picked = ft.pick_curves(results.curves, results.ok(), "transfer_mean", "maximize")
    assert len(picked) == ft.MAX_CURVES and {("run", n) for n in range(290, 300)} <= set(picked)
    fig = ft.curves_figure(results.curves, picked, "loss_recon", fr.palette(["mnist_animals"]))
    xs = list(fig.data[0].x)
    assert xs.count(None) == ft.MAX_CURVES and len(xs) <= ft.MAX_CURVES * (ft.MAX_POINTS + 1)
    assert xs[0] == 10 and xs[xs.index(None) - 1] == 1000  # first and last step of a curve survive thinning


def test_confusions_are_rates_per_source_class(tmp_path):
    results = read_runs([write_run(tmp_path / "run", [trial(0)])])
    best = agg.best_trials(results)
    fig = ft.confusion_figure(best, {"mnist_animals": ("mnist_vae", "animals_vae")},
                              {"mnist_vae": tuple("0123456789"), "animals_vae": tuple("abcdefghij")})
    a_to_b, b_to_a = fig.data
    assert np.allclose(np.asarray(a_to_b.z), np.eye(10)) and np.allclose(np.asarray(b_to_a.z), 0.1)
    assert list(a_to_b.x) == list("abcdefghij") and list(b_to_a.y) == list("abcdefghij")


def test_two_runs_are_compared_in_the_same_figures(tmp_path):
    one = write_run(tmp_path / "one", [trial(0, a_to_b=0.7)], curve(0))
    two = write_run(tmp_path / "two", [trial(0, a_to_b=0.9)], curve(0, start=2.0))
    results = read_runs([one, two])
    assert sorted(set(results.trials["series"])) == ["one · mnist_animals", "two · mnist_animals"]
    from ltrans.analysis.domains import pair_sides

    fig = fr.pair_matrix_figure(agg.pair_matrix(results, {"mnist_animals": pair_sides("mnist_animals")}))
    assert len(fig.data) == 2  # one panel per run
    report = write_report([one, two], tmp_path / "both.html")
    curves = next(s for s in report.sections if s.key == "curves").panels[0].figure
    assert sorted(t.name for t in curves.data) == ["one · mnist_animals · ok", "two · mnist_animals · ok"]
    colours = {t.line.color for t in curves.data}
    assert len(colours) == 2  # the run is the colour


def test_the_runs_table_names_the_cpu_where_provenance_records_it(tmp_path):
    old = write_run(tmp_path / "old", [trial(0)])  # written before provenance recorded the CPU model
    new = write_run(tmp_path / "new", [trial(0)])
    prov = json.loads((new / "provenance.json").read_text())
    prov["machine"]["cpu"] = "AMD EPYC 7B13"
    (new / "provenance.json").write_text(json.dumps(prov))
    page = write_report([old, new], tmp_path / "both.html").path.read_text()
    assert "<td>h, 2 CPUs (AMD EPYC 7B13), 0 GPUs</td>" in page and "<td>h, 2 CPUs, 0 GPUs</td>" in page


@pytest.mark.parametrize("case", ["all_failed", "one_trial", "no_curves", "no_trials"])
def test_partial_runs_give_a_report_that_says_what_is_missing(tmp_path, case):
    rows = {"all_failed": [trial(0, status="failed"), trial(1, status="pruned")], "one_trial": [trial(0)],
            "no_curves": [trial(0), trial(1, lr=2e-3)], "no_trials": None}[case]
    run = write_run(tmp_path / case, rows, curves=curve(0) if case == "one_trial" else None)
    report = write_report([run], tmp_path / f"{case}.html")
    page = report.path.read_text()
    notes = " ".join(n for s in report.sections for n in s.notes)
    expected = {"all_failed": "no trial finished ok (1 pruned, 1 failed)", "one_trial": "1 ok trials (needs 8)",
                "no_curves": "curves.parquet is missing", "no_trials": "no finished trials"}[case]
    assert expected in notes and page.count("<section") == 7
    if case == "no_trials":
        assert "trials.parquet is missing" in page


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path):
    from ltrans.cli import cli

    (tmp_path / "plain").mkdir()
    for target, words in ((tmp_path / "nope", "does not exist"), (tmp_path / "plain", "not a sweep run folder")):
        result = CliRunner().invoke(cli, ["report", str(target)], obj={})
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]


@pytest.mark.parametrize(("name", "damage", "words"), [
    ("sweep.yaml", "a: [b\n", "is not valid YAML (expected ',' or ']'"),
    ("sweep.yaml", "- a\n- b\n", "holds a YAML list, not the mapping"),
    ("provenance.json", "{bad", "is not valid JSON"),
    ("provenance.json", "[1, 2]", "holds a JSON list, not an object"),
    ("trials.parquet", "truncate", "is not a readable parquet file"),
    ("curves.parquet", "garbage, not columns\n", "is not a readable parquet file (Parquet magic bytes not found"),
])
def test_a_damaged_run_file_is_one_line_naming_it_and_exit_2(tmp_path, name, damage, words):
    from ltrans.cli import cli

    run = write_run(tmp_path / "run", [trial(0), trial(1, lr=2e-3)], curves=curve(0))
    path = run / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.write_text(damage)
    result = CliRunner().invoke(cli, ["report", str(run), "-o", str(tmp_path / "r.html")], obj={})
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {path} ") and words in lines[0]
    fix = {"sweep.yaml": "`ltrans sweep run FILE`", "provenance.json": "delete it",
           "trials.parquet": "restore it", "curves.parquet": "restore it"}[name]
    assert fix in lines[0]


def test_the_report_file_gets_the_mode_the_umask_allows(tmp_path):
    import os
    import stat

    run = write_run(tmp_path / "run", None)
    old = os.umask(0o027)  # a group-shared cluster folder: group may read, others not
    try:
        report = write_report([run], tmp_path / "r.html")
    finally:
        os.umask(old)
    assert stat.S_IMODE(report.path.stat().st_mode) == 0o640


def test_a_damaged_parquet_of_a_run_with_its_ledger_says_resume_rewrites_it(tmp_path):
    run = write_run(tmp_path / "run", [trial(0)])
    (run / "ledger").mkdir()
    (run / "state.json").write_text("{}")
    (run / "trials.parquet").write_text("garbage")
    with pytest.raises(UserError, match=f"`ltrans sweep resume {run}` rewrites it from the run's ledger"):
        read_runs([run])


def test_audio_examples_embed_one_player_per_class_and_side(tmp_path):
    from ltrans.analysis.examples import audio_players

    from ltrans.data.audio import SAMPLE_RATE, write_wav

    tone = np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE)).astype(np.float32)
    (tmp_path / "wav").mkdir()
    for i, (label, kind) in enumerate([(3, "source"), (3, "translation"), (3, "source"), (7, "translation")]):
        write_wav(tmp_path / "wav" / f"a_to_b_{i:03d}_class{label}_{kind}.wav", tone)
    markup = audio_players(tmp_path, "a_to_b")
    assert markup.count("<audio controls") == 3 and markup.count("src='data:audio/wav;base64,UklGR") == 3  # RIFF
    assert "class 3 source" in markup and "class 7 translation" in markup and audio_players(tmp_path, "b_to_a") == ""


def test_a_run_where_no_trial_has_finished_gets_a_report_that_says_so(tmp_path):
    from ltrans.sweep.results import write_parquets

    run = write_run(tmp_path / "fresh", None)
    write_parquets(run)  # what a sweep stopped before its first trial finished leaves
    (tmp_path / "old").mkdir()
    pd.DataFrame().to_parquet(tmp_path / "old" / "trials.parquet")  # the columnless file older runners wrote
    for trials in (run / "trials.parquet", tmp_path / "old" / "trials.parquet"):
        (run / "trials.parquet").write_bytes(trials.read_bytes())
        report = write_report([run], tmp_path / "r.html")
        assert "no finished trials in this run yet" in {n for s in report.sections for n in s.notes}
        assert read_runs([run]).trials.empty


def test_trials_with_rows_but_no_status_column_are_one_error_naming_the_file(tmp_path):
    run = write_run(tmp_path / "run", [trial(0)])
    pd.DataFrame([trial(0)]).drop(columns=["status", "pair"]).to_parquet(run / "trials.parquet")
    with pytest.raises(UserError, match=f"{run / 'trials.parquet'} has 1 rows but no status, pair column"):
        read_runs([run])


def test_an_output_path_under_a_file_says_it_is_a_file_not_a_folder(tmp_path):
    from ltrans.cli import cli

    run = write_run(tmp_path / "run", [trial(0)])
    (tmp_path / "notes").write_text("mine")
    for out in (tmp_path / "notes" / "r.html", tmp_path / "notes" / "sub" / "r.html"):
        result = CliRunner().invoke(cli, ["report", str(run), "-o", str(out)], obj={})
        assert result.exit_code == 2 and result.output.startswith(f"error: {tmp_path / 'notes'}: is a file, "
                                                                  "not a folder"), result.output
    assert (tmp_path / "notes").read_text() == "mine"
