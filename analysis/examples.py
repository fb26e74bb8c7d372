"""Examples of each pair's best bridge: translation grids (images, spectrograms) and audio players.

A sweep keeps no translator outputs: ``ltrans/sweep`` saves no bridge weights, only metrics. With
``examples=True`` the report retrains the best bridge trial of each pair from its stored config and
seed (``ltrans.pipeline.run_trial``, over base models already in the artifact store, as cheap as the
trial itself: ``train_seconds`` in trials.parquet) and draws its translations with
``ltrans.showcase.write_translations``. The pictures and WAVs are cached in the artifact store under
the trial's content key, so a second report reuses them. Without it the section says "not stored".
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd
from ltrans.analysis.runs import Results, plain

PER_DIRECTION = 20  # held-out source examples translated per direction (2 per class)
FORMAT = 1


def best_bridges(results: Results) -> pd.DataFrame:
    """The ok bridge trial with the best objective of each run and pair."""
    ok = results.ok()
    ok = ok[ok["method"] == "bridge"]
    ok = ok.sort_values(results.objective, ascending=results.direction == "minimize", kind="stable")
    return ok.groupby(["run", "pair"], sort=True).head(1).reset_index(drop=True)


def trial_config(row: pd.Series):
    """The TrialConfig a trials.parquet row was run with (its config/* columns)."""
    from ltrans.sweep.trials import config_from_flat

    flat = {k.removeprefix("config/"): plain(v) for k, v in row.items() if k.startswith("config/")}
    return config_from_flat(flat)


def regenerate(row: pd.Series, store) -> Path:
    """The cached folder of a best trial's translations, made by retraining it once."""
    from ltrans.artifacts import make_key

    key = make_key("report_examples", str(row["pair"]), format=FORMAT, content_key=str(row["content_key"]),
                   n=PER_DIRECTION)
    return store.get_or_create(key, lambda out: _write(row, store, out))


def _write(row: pd.Series, store, out: Path) -> None:
    """Retrain the trial into ``out``: both directions' grids (and WAVs), plus regenerated.json."""
    import torch

    from ltrans.files import atomic_write_json
    from ltrans.pipeline import load_pair, run_trial
    from ltrans.showcase import write_translations

    cfg = trial_config(row)
    data = load_pair(cfg.pair, store=store, preset=cfg.base)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's Ray workers ran it (OMP_NUM_THREADS=1): same numerics
    try:
        metrics, result = run_trial(cfg, data)
    finally:
        torch.set_num_threads(threads)
    if metrics.status != "ok":
        raise RuntimeError(f"retraining trial {row['number']} ended {metrics.status}: {metrics.reason}")
    sides = {"a": data.a, "b": data.b}
    summary = {src: write_translations(result.model, sides, src, PER_DIRECTION, out, seed=cfg.seed)
               for src in ("a", "b")}
    atomic_write_json(out / "regenerated.json", {"metrics": {k: v for k, v in metrics.metrics.items()
                                                              if k.startswith("transfer_")},
                                                  "train_seconds": metrics.train_seconds, "summary": summary})


def examples_html(results: Results, store) -> tuple[str, list[str]]:
    """The section's markup for every pair's best bridge, and notes for pairs left out."""
    from ltrans.analysis.domains import pair_sides
    from ltrans.analysis.speed import base_rows, stored_model_times

    parts, notes = [], []
    stored = stored_model_times(store.root)
    for _, row in best_bridges(results).iterrows():
        sub = Results(results.runs, results.trials[results.trials["pair"] == row["pair"]], results.curves)
        _, missing = base_rows(sub, stored)
        if missing:
            notes.append(f"{row['series']}: not regenerated, base models not in the artifact store at "
                         f"{store.root}: {', '.join(missing)}")
            continue
        try:
            folder = regenerate(row, store)
        except RuntimeError as err:  # the retrained trial did not end ok: say so, draw the rest
            notes.append(f"{row['series']}: not regenerated, {err}")
            continue
        parts.append(_pair_html(row, folder, pair_sides(row["pair"])))
    return "\n".join(parts), notes


def _pair_html(row: pd.Series, folder: Path, sides: tuple[str, str]) -> str:
    """A pair's heading, a caption comparing sweep and retrained accuracy, both directions' grids."""
    info = json.loads((folder / "regenerated.json").read_text())
    again = info["metrics"]
    head = (f"<h3>{html.escape(str(row['series']))} · trial {row['number']}</h3><p class='caption'>Retrained from "
            f"the trial's stored config and seed in {info['train_seconds']:.1f} s. Transfer A→B / B→A: sweep "
            f"{row['transfer_a_to_b']:.3f} / {row['transfer_b_to_a']:.3f}, retrained "
            f"{again.get('transfer_a_to_b', float('nan')):.3f} / {again.get('transfer_b_to_a', float('nan')):.3f}. "
            "Each row is a class: source, translation, source, translation; 'c: k/m' = the target classifier "
            "agreed on k of m.</p>")
    body = []
    for stem, (src, dst) in (("a_to_b", sides), ("b_to_a", sides[::-1])):
        png = _data_uri(folder / f"{stem}.png", "image/png")
        body.append(f"<figure class='example'><figcaption>{html.escape(src)} → {html.escape(dst)}</figcaption>"
                    f"<img alt='{stem} translations' src='{png}'>{audio_players(folder, stem)}</figure>")
    return head + "<div class='examples'>" + "".join(body) + "</div>"


def audio_players(folder: Path, stem: str) -> str:
    """Audio players for the first clip of each class (source and translation), WAVs embedded."""
    wavs = sorted((folder / "wav").glob(f"{stem}_*.wav")) if (folder / "wav").is_dir() else []
    first: dict[tuple[str, str], Path] = {}
    for path in wavs:
        m = re.fullmatch(rf"{stem}_\d+_class(\d+)_(source|translation)\.wav", path.name)
        if m:
            first.setdefault((m.group(1), m.group(2)), path)
    items = [f"<div class='clip'><span>class {c} {kind}</span><audio controls preload='none' "
             f"src='{_data_uri(p, 'audio/wav')}'></audio></div>" for (c, kind), p in sorted(first.items())]
    return f"<div class='players'>{''.join(items)}</div>" if items else ""


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
