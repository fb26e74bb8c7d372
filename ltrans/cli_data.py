"""``ltrans data ...``: list the domains and look at their examples."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ltrans.cli import FORMAT, _emit, _store, cli

DATA_DIR = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Load the real dataset from this folder instead of the embedded data.")
SEED = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                    help="Seed of the train/test split.")


@cli.group()
def data() -> None:
    """The four domains: mnist, animals, digits8, spoken_digits."""


@data.command("ls")
@FORMAT
@click.pass_context
def data_ls(ctx: click.Context, fmt: str) -> None:
    """Each domain: modality, classes, train/test sizes and where it comes from."""
    from ltrans.data import DATASETS, load_split

    rows = []
    for name in DATASETS.names():
        domain = DATASETS[name]
        split = load_split(name, store=_store(ctx))
        rows.append({
            "name": name, "modality": domain.modality, "classes": domain.n_classes,
            "shape": "x".join(map(str, domain.sample_shape)), "train": len(split.train),
            "test": len(split.test), "source": domain.source,
            "class_names": list(split.class_names or domain.class_names),
        })
    _emit(rows, ["name", "modality", "classes", "shape", "train", "test", "source"], fmt)


@data.command("show")
@click.argument("name")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the PNG grid (and WAV files for audio) into.")
@click.option("--per-class", type=click.IntRange(1, 50), default=8, show_default=True)
@click.option("--split", "which", type=click.Choice(["train", "test"]), default="train", show_default=True)
@DATA_DIR
@SEED
@click.pass_context
def data_show(ctx: click.Context, name: str, out: Path, per_class: int, which: str,
              data_dir: Path | None, seed: int) -> None:
    """Write examples of domain NAME per class: a PNG grid, plus WAVs for audio."""
    from ltrans.data import DATASETS, load_split
    from ltrans.files import writable_dir

    domain = DATASETS[name]
    split = load_split(name, data_dir=data_dir, seed=seed, store=_store(ctx))  # a bad --data-dir leaves no -o
    writable_dir(out)  # named as the other commands name a bad -o
    examples = getattr(split, which)
    class_names = list(split.class_names or domain.class_names)
    written = show_examples(domain.modality, examples.x, examples.y, class_names, per_class, out, name)
    for path in written:
        click.echo(str(path))


def show_examples(modality: str, x: np.ndarray, y: np.ndarray, class_names: list[str], per_class: int,
                  out: Path, stem: str) -> list[Path]:
    """Write a per-class PNG grid (images) or spectrogram grid + WAVs (audio); return the paths."""
    from ltrans import viz

    if modality == "image":
        rows = viz.per_class_rows(x, y, len(class_names), per_class)
        scale = 8 if x.shape[-1] <= 8 else 2
        return [viz.save_png(viz.tile_grid(rows, class_names, scale=scale), out / f"{stem}.png")]
    import torch

    from ltrans.data.audio import to_model_space, write_wav

    rows = viz.per_class_rows(x, y, len(class_names), per_class)
    specs = [[viz.spectrogram_rgb(to_model_space(torch.from_numpy(clip[None]))[0].numpy()) for clip in row]
             for row in rows]
    paths = [viz.save_png(viz.tile_grid(specs, class_names, scale=2), out / f"{stem}_spectrograms.png")]
    for label, row in zip(class_names, rows):
        for i, clip in enumerate(row):
            path = out / f"{stem}_{label}_{i}.wav"
            write_wav(path, clip)
            paths.append(path)
    return paths
