"""``ltrans bridge train``, ``ltrans translate`` and ``ltrans demo``: trials on the one path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from ltrans.cli import _store, cli
from ltrans.cli_models import DEVICE
from ltrans.config import MAX_SEED
from ltrans.errors import UserError

SETS = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                    help="Override a trial setting, e.g. --set bridge.beta_swd=0.3 (repeatable).")


def _pair_names() -> list[str]:
    from ltrans.pairs import PAIRS

    return PAIRS.names()


def trial_config(pair: str, preset: str, sets: tuple[str, ...]):
    """The preset's TrialConfig for ``pair`` with ``--set`` overrides applied."""
    import ltrans.models  # noqa: F401  (registries)
    from ltrans.config import override, parse_sets
    from ltrans.presets import PRESETS

    return override(PRESETS[preset](pair), parse_sets(sets))


def train_and_write(ctx: click.Context, cfg, out: Path, device: str) -> dict:
    """Prepare the pair, run one trial, write config.json, row.json and bridge.pt into ``out``."""
    import torch

    from ltrans.files import atomic_open, atomic_write_json, atomic_write_text, writable_dir
    from ltrans.models import zoo
    from ltrans.pipeline import load_pair, run_trial

    device = zoo.resolve_device(device)
    writable_dir(out)  # a bad -o fails now, not after the trial (up to 40 min)
    click.echo(f"preparing pair {cfg.pair} (base models, classifiers, latents; cached after the first run)")
    data = load_pair(cfg.pair, store=_store(ctx), preset=cfg.base, device=device, progress=True)
    click.echo(f"training {cfg.method} for {cfg.bridge.steps} steps ...")
    row, translator = run_trial(cfg, data, device=device, progress=True)
    _remove_results(out)  # a failed or Procrustes re-run must not leave the old bridge beside its config
    atomic_write_json(out / "config.json", dataclasses.asdict(cfg))
    atomic_write_text(out / "row.json", row.to_json() + "\n")
    if cfg.method == "bridge" and translator is not None and row.status == "ok":
        from ltrans.showcase import bridge_state, write_examples

        with atomic_open(out / "bridge.pt") as f:
            torch.save(bridge_state(translator.model), f)
        write_examples(translator.model, {"a": data.a, "b": data.b}, out / "examples", seed=cfg.seed)
        click.echo(f"translations and interpolation strips in {out / 'examples'}")
    return row.flat()


def _remove_results(out: Path) -> None:
    """Delete the bridge and examples an earlier trial wrote into ``out`` (weights first: without them
    ``ltrans translate`` refuses the folder rather than load them under another config)."""
    import shutil

    (out / "bridge.pt").unlink(missing_ok=True)
    if (out / "examples").is_dir():
        shutil.rmtree(out / "examples")


@cli.group()
def bridge() -> None:
    """Bridges between two frozen base models."""


@bridge.command("train")
@click.argument("pair")
@click.option("--preset", type=click.Choice(["paper", "smoke", "demo"]), default="paper", show_default=True)
@SETS
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write config.json, row.json, bridge.pt and examples/ (default runs/bridge/PAIR).")
@DEVICE
@click.pass_context
def bridge_train(ctx: click.Context, pair: str, preset: str, sets: tuple[str, ...], out: Path | None,
                 device: str) -> None:
    """Train one bridge for PAIR and print its metrics row (JSON)."""
    cfg = trial_config(pair, preset, sets)
    row = train_and_write(ctx, cfg, out or Path("runs") / "bridge" / pair, device)
    click.echo(json.dumps(_headline(row), indent=2))


@cli.command()
@click.argument("pair")
@click.option("--from", "src", type=click.Choice(["a", "b"]), default="a", show_default=True,
              help="Source side of PAIR (a is the pair's first base model).")
@click.option("-n", "n", type=click.IntRange(10, 1000), default=50, show_default=True,
              help="Held-out source examples to translate (class-balanced).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the side-by-side grid, interpolation strips and (audio) WAVs.")
@click.option("--bridge", "bridge_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder written by `ltrans bridge train` (default runs/bridge/PAIR).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Which held-out examples and strips.")
@DEVICE
@click.pass_context
def translate(ctx: click.Context, pair: str, src: str, n: int, out: Path, bridge_dir: Path | None, seed: int,
              device: str) -> None:
    """Translate held-out examples of one side of PAIR with a trained bridge; write grids and WAVs."""
    import ltrans.models  # noqa: F401  (registries)
    from ltrans.files import atomic_write_json, writable_dir
    from ltrans.models import zoo
    from ltrans.pairs import PAIRS
    from ltrans.pipeline import load_pair
    from ltrans.showcase import load_bridge, write_interpolations, write_translations

    PAIRS[pair]  # unknown pair -> clear error with the known ones
    folder = bridge_dir or Path("runs") / "bridge" / pair
    cfg, model = load_bridge(folder)
    if cfg.pair != pair:
        raise UserError(f"{folder} holds a bridge for {cfg.pair!r}, not {pair!r}; pass --bridge with a "
                        f"folder from `ltrans bridge train {pair}`")
    device = zoo.resolve_device(device)
    writable_dir(out)  # before the pair is prepared
    data = load_pair(pair, store=_store(ctx), preset=cfg.base, device=device, progress=True)
    sides = {"a": data.a, "b": data.b}
    summary = write_translations(model.to(device), sides, src, n, out, seed)
    summary["files"] += [str(p) for p in write_interpolations(model, sides, src, out, seed=seed)]
    atomic_write_json(out / f"summary_{summary['direction']}.json", summary)
    for path in summary["files"]:
        click.echo(path)
    click.echo(f"{pair} {summary['direction']}: target classifier agrees with the source on "
               f"{summary['agreement']:.1%} of {summary['n']} examples")


def _headline(row: dict) -> dict:
    """The row without the confusion matrices (they are in row.json)."""
    return {k: v for k, v in row.items() if not k.startswith("confusion_")}


@cli.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/demo"),
              show_default=True)
@click.option("--pair", default="mnist_mnist", show_default=True)
@DEVICE
@click.pass_context
def demo(ctx: click.Context, out: Path, pair: str, device: str) -> None:
    """The main job on the embedded data: domains, frozen base models, latents, one bridge trial."""
    from ltrans.cli_data import data_ls, show_examples
    from ltrans.data import DATASETS, load_split

    ctx.invoke(data_ls, fmt="table")
    for name in DATASETS.names():
        domain = DATASETS[name]
        split = load_split(name, store=_store(ctx))
        show_examples(domain.modality, split.train.x, split.train.y, list(domain.class_names), 8,
                      out / "data", name)
    row = train_and_write(ctx, trial_config(pair, "demo", ()), out / "trial", device)
    click.echo(json.dumps(_headline(row), indent=2))
    click.echo(f"wrote {out}/data (example grids and WAVs) and {out}/trial (config, metrics row, bridge)")


@bridge.command("ablate")
@click.argument("pair")
@click.option("--preset", type=click.Choice(["paper", "smoke", "demo"]), default="paper", show_default=True)
@click.option("--study", "studies", multiple=True, type=click.Choice(["ladder", "labels", "classifier"]),
              help="Which studies (default all): the AE->VAE->SWD->classifier ladder, label budgets "
                   "with the Procrustes baseline, frozen vs trained classifier.")
@SETS
@click.option("--variant", "names", multiple=True, metavar="NAME",
              help="Run only this variant of the chosen studies, e.g. --variant 'bridge n_sup=100' "
                   "(repeatable; default all).")
@click.option("--seeds", type=int, default=1, show_default=True,
              help="Run every variant with this many consecutive seeds (from the config's seed) and "
                   "print each variant's mean and standard deviation over them.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to append rows.jsonl (default runs/ablate/PAIR).")
@DEVICE
@click.pass_context
def bridge_ablate(ctx: click.Context, pair: str, preset: str, studies: tuple[str, ...], sets: tuple[str, ...],
                  names: tuple[str, ...], seeds: int, out: Path | None, device: str) -> None:
    """The paper's ablations and baselines for PAIR on one budget; one JSON row per variant and seed."""
    from ltrans.ablations import STUDIES, over_seeds, summarise, variants
    from ltrans.files import writable_dir
    from ltrans.models import zoo
    from ltrans.pipeline import load_pair, run_trial

    base = trial_config(pair, preset, sets)
    runs = over_seeds(variants(base, studies or tuple(STUDIES), names), seeds)  # checked before training
    device = zoo.resolve_device(device)
    out = writable_dir(out or Path("runs") / "ablate" / pair)  # before the pair is prepared
    data = load_pair(pair, store=_store(ctx), preset=base.base, device=device, progress=True)
    click.echo(f"{'study':<11} {'variant':<22} {'seed':>4} {'A->B':>6} {'B->A':>6} {'fid A->B':>9} {'train s':>8}")
    done = []
    for study, name, cfg in runs:
        row, _ = run_trial(cfg, data, device=device, progress=True)  # a bar on stderr while it trains
        flat = {"study": study, "variant": name, **row.flat()}
        with open(out / "rows.jsonl", "a") as f:  # one complete line per trial: nothing half-written
            f.write(json.dumps(flat, sort_keys=True) + "\n")
        done.append(flat)
        ab, ba, fid = (flat.get(k, float("nan")) for k in ("transfer_a_to_b", "transfer_b_to_a", "fid_a_to_b"))
        click.echo(f"{study:<11} {name:<22} {cfg.seed:>4} {ab:>6.3f} {ba:>6.3f} {fid:>9.2f} "
                   f"{row.train_seconds:>8.1f}  {row.status} {row.reason}")
    if seeds > 1:
        click.echo(f"\nover {seeds} seeds (mean +- standard deviation of the ok runs):")
        click.echo(f"{'study':<11} {'variant':<22} {'ok':>3} {'A->B':>15} {'B->A':>15}")
        for s in summarise(done):
            ab = f"{s['transfer_a_to_b_mean']:.3f} +- {s['transfer_a_to_b_std']:.3f}"
            ba = f"{s['transfer_b_to_a_mean']:.3f} +- {s['transfer_b_to_a_std']:.3f}"
            click.echo(f"{s['study']:<11} {s['variant']:<22} {s['n_ok']:>3} {ab:>15} {ba:>15}")
    click.echo(f"rows appended to {out / 'rows.jsonl'}")
