"""``ltrans base ...`` (train, ls, sample) and ``ltrans latents ...`` (build): the frozen base models,
their domain classifiers and their cached latents."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ltrans.cli import FORMAT, _emit, _store, cli
from ltrans.config import MAX_SEED

DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                      show_default=True, help="Where to train; auto picks CUDA when present.")
PRESET = click.option("--preset", "base_preset", type=click.Choice(["full", "tiny"]), default="full",
                      show_default=True, help="Base-model size: full, or tiny (seconds; for tests).")
CLASSIFIER_PREFIX = "classifier:"  # `base ls` and `base train` name a domain classifier classifier:DOMAIN


def _base_names() -> list[str]:
    import ltrans.models  # noqa: F401  (fills the registries)
    from ltrans.models.base import BASE_MODELS

    return BASE_MODELS.names()


@cli.group()
def base() -> None:
    """Frozen base generative models and domain classifiers."""


@base.command("train")
@click.argument("name")
@PRESET
@DEVICE
@click.pass_context
def base_train(ctx: click.Context, name: str, base_preset: str, device: str) -> None:
    """Train base model NAME (and its domain classifier) once; later runs are cache hits.

    NAME may also be classifier:DOMAIN (as `base ls` lists them) to train only that domain's classifier,
    for example classifier:digits8, whose domain has no base model."""
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS, CLASSIFIERS

    _base_names()
    device = zoo.resolve_device(device)
    if name.startswith(CLASSIFIER_PREFIX):
        domain = name[len(CLASSIFIER_PREFIX):]
        CLASSIFIERS[domain]  # unknown -> one line naming the known domains
        _echo_trained(zoo.classifier(domain, store=_store(ctx), preset=base_preset, device=device, progress=True))
        return
    if name not in BASE_MODELS:
        from ltrans.errors import UserError

        raise UserError(f"unknown base model {name!r}. Known: {', '.join(BASE_MODELS.names())}; or a domain "
                        f"classifier alone: {', '.join(CLASSIFIER_PREFIX + d for d in CLASSIFIERS.names())}")
    spec = BASE_MODELS[name]
    for trained in (zoo.base_model(name, store=_store(ctx), preset=base_preset, device=device, progress=True),
                    zoo.classifier(spec.domain, store=_store(ctx), preset=base_preset, device=device,
                                   progress=True)):
        _echo_trained(trained)
    from ltrans.samples import sample_quality  # samples judged by the domain classifier, stored for `base ls`

    q = sample_quality(name, store=_store(ctx), preset=base_preset, device=device)
    click.echo(f"{name}: {q['confident_fraction']:.1%} of {q['n']} prior samples confidently a class; "
               f"per class {class_figures(q['confident_per_class'], spec.domain)}")
    if "class_conditional" in q:
        _echo_conditional(name, q["class_conditional"], spec.domain)


def _echo_trained(trained) -> None:
    r = trained.record
    click.echo(f"{r['kind']} {r['name']}: {r['train_seconds']:.1f} s training, {json.dumps(r['info'])}")


def class_figures(values: dict, domain: str) -> str:
    """'zero 0.17, one 0.04, ...': a per-class figure named and in the domain's class order (stored
    summaries are JSON with sorted keys, which is not the class order of every domain)."""
    from ltrans.data.base import DATASETS

    names = [n for n in DATASETS[domain].class_names if n in values]
    return ", ".join(f"{n} {round(values[n], 2) if isinstance(values[n], float) else values[n]}" for n in names)


def _echo_conditional(name: str, c: dict, domain: str) -> None:
    click.echo(f"{name}: {c['confident_accuracy']:.1%} of {c['n_per_class']} class-conditional samples per class "
               f"recognised as their class (softmax >= {c['threshold']}; {c['accuracy']:.1%} by argmax); "
               f"per class {class_figures(c['confident_accuracy_per_class'], domain)}")
    if c.get("components_per_class"):
        click.echo(f"{name}: Gaussian mixture components per class (chosen by held-out likelihood): "
                   f"{class_figures(c['components_per_class'], domain)}")


@base.command("ls")
@PRESET
@FORMAT
@click.pass_context
def base_ls(ctx: click.Context, base_preset: str, fmt: str) -> None:
    """Every base model: domain, latent dim, status, training time, quality."""
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS, CLASSIFIERS

    store = _store(ctx)
    rows = []
    for name in _base_names():
        spec = BASE_MODELS[name]
        record = zoo.is_trained(name, store=store, preset=base_preset)
        rows.append({"name": name, "kind": spec.kind, "domain": spec.domain, "latent_dim": spec.latent_dim,
                     "status": "trained" if record else "not trained",
                     "train_s": round(record["train_seconds"], 1) if record else "",
                     "quality": _quality(record, store), "info": record["info"] if record else None})
    for domain in CLASSIFIERS.names():
        record = zoo.is_trained(domain, store=store, preset=base_preset, kind="classifier")
        rows.append({"name": f"{CLASSIFIER_PREFIX}{domain}", "kind": "classifier", "domain": domain, "latent_dim": "",
                     "status": "trained" if record else "not trained",
                     "train_s": round(record["train_seconds"], 1) if record else "",
                     "quality": _quality(record), "info": record["info"] if record else None})
    _emit(rows, ["name", "kind", "domain", "latent_dim", "status", "train_s", "quality"], fmt)


@base.command("sample")
@click.argument("name")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the sample grids (and WAVs for audio) and summary.json.")
@click.option("-n", "n_samples", type=click.IntRange(10, 100_000), default=2000, show_default=True,
              help="Prior draws to decode and classify.")
@click.option("--per-class", type=click.IntRange(1, 32), default=8, show_default=True,
              help="Most confident samples shown (and WAVs written) per class.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@PRESET
@DEVICE
@click.pass_context
def base_sample(ctx: click.Context, name: str, out: Path, n_samples: int, per_class: int, seed: int,
                base_preset: str, device: str) -> None:
    """Prior samples of base model NAME per class, judged by its domain classifier."""
    from ltrans.files import atomic_write_json
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS

    _base_names()
    spec, device = BASE_MODELS[name], zoo.resolve_device(device)
    model = zoo.base_model(name, store=_store(ctx), preset=base_preset, device=device, progress=True)
    clf = zoo.classifier(spec.domain, store=_store(ctx), preset=base_preset, device=device, progress=True)
    paths, stats = write_samples(name, spec.domain, model.module, clf.module, model.module.latent_dim, out,
                                 n=n_samples, per_class=per_class, seed=seed)
    if spec.kind == "vae":  # draws from each class's region of the latent space, unselected
        from ltrans.samples import vae_conditional

        cond = vae_conditional(name, model.module, clf.module, store=_store(ctx), preset=base_preset,
                               device=device, n_per_class=max(1, n_samples // 10), seed=seed)
        more, stats["class_conditional"] = write_conditional(name, spec.domain, cond, out, per_class=per_class)
        paths += more
    from ltrans.samples import sample_quality

    sample_quality(name, store=_store(ctx), preset=base_preset, device=device)  # so that `base ls` shows it
    atomic_write_json(out / "summary.json", stats)
    for path in paths:
        click.echo(str(path))
    click.echo(f"{name}: {stats['confident_fraction']:.1%} of {n_samples} prior samples confidently a class "
               f"(softmax >= {stats['threshold']}); per class {class_figures(stats['confident_per_class'], spec.domain)}")
    if "class_conditional" in stats:
        _echo_conditional(name, stats["class_conditional"], spec.domain)


def write_samples(name: str, domain: str, decoder, classifier, latent_dim: int, out: Path, *, n: int,
                  per_class: int, seed: int) -> tuple[list[Path], dict]:
    """Grid of the most confident samples per class, a grid of unselected draws, WAVs for audio."""
    from ltrans import render
    from ltrans.data.base import DATASETS
    from ltrans.samples import prior_samples, summary

    names = list(DATASETS[domain].class_names)
    samples = prior_samples(decoder, classifier, latent_dim, n=n, seed=seed)
    stats = summary(samples, names)
    best = [samples.best_of_class(c, per_class) for c in range(len(names))]
    rows = [[render.tile(domain, samples.x[i]) for i in idx] or [render.tile(domain, samples.x[0] * 0)]
            for idx in best]
    labels = [f"{c} ({stats['confident_per_class'][c]})" for c in names]
    paths = [render.write_grid(rows, labels, out / f"{name}_by_class.png")]
    draws = [[render.tile(domain, x) for x in samples.x[r * 10:(r + 1) * 10]] for r in range(min(8, n // 10))]
    paths.append(render.write_grid(draws, [f"{10 * r + 1}-" for r in range(len(draws))],
                                   out / f"{name}_draws.png"))
    if render.is_audio(domain):
        for c, idx in zip(names, best):
            paths += render.write_wavs([samples.x[i] for i in idx], [f"{name}_{c}_{k}" for k in range(len(idx))],
                                       out / "wav")
    return paths, stats


def write_conditional(name: str, domain: str, cond, out: Path, *, per_class: int) -> tuple[list[Path], dict]:
    """Grid of the first ``per_class`` class-conditional draws of each class (not the best ones), WAVs
    for audio; the figures of ``samples.conditional_summary``."""
    from ltrans import render
    from ltrans.data.base import DATASETS
    from ltrans.samples import conditional_summary

    names = list(DATASETS[domain].class_names)
    stats = conditional_summary(cond, names)
    first = [(cond.target == c).nonzero().flatten()[:per_class].tolist() for c in range(len(names))]
    rows = [[render.tile(domain, cond.samples.x[i]) for i in idx] for idx in first]
    labels = [f"{c} ({v:.0%})" for c, v in stats["confident_accuracy_per_class"].items()]
    paths = [render.write_grid(rows, labels, out / f"{name}_class_conditional.png")]
    if render.is_audio(domain):
        for c, idx in zip(names, first):
            paths += render.write_wavs([cond.samples.x[i] for i in idx],
                                       [f"{name}_cond_{c}_{k}" for k in range(len(idx))], out / "wav")
    return paths, stats


def _quality(record: dict | None, store=None) -> str:
    """The headline figure of a record: a classifier's test accuracy; a VAE's reconstruction error and the
    share of its class-conditional samples recognised; a GAN's share of prior samples the classifier is
    sure of. Sample figures appear once `ltrans base train` or `base sample` computed them."""
    from ltrans.samples import stored_quality

    if not record:
        return ""
    info = record["info"]
    if "test_accuracy" in info:
        return f"test acc {info['test_accuracy']:.4g}"
    q = stored_quality(record, store) if store is not None else None
    if "test_recon_mse" in info:
        if q and "class_conditional" in q:
            cond = f"; class-conditional samples {q['class_conditional']['confident_accuracy']:.1%} recognised"
        else:
            cond = "; samples: run `ltrans base sample`" if store is not None else ""
        return f"test recon mse {info['test_recon_mse']:.4g}{cond}"
    if store is not None and record.get("kind") == "gan":
        return f"confident samples {q['confident_fraction']:.1%}" if q else "run `ltrans base sample`"
    return ""


@cli.group()
def latents() -> None:
    """Cached latent datasets of the base models."""


@latents.command("build")
@click.argument("name")
@PRESET
@DEVICE
@click.pass_context
def latents_build(ctx: click.Context, name: str, base_preset: str, device: str) -> None:
    """Encode (VAE) or sample and select (GAN) the latent dataset of base model NAME."""
    from ltrans.latents import latent_dataset
    from ltrans.models import zoo

    _base_names()
    split = latent_dataset(name, store=_store(ctx), preset=base_preset, device=zoo.resolve_device(device),
                           progress=True)
    r = split.record
    drawn = (f"; kept from {r['prior_draws']:,} prior draws, confident per class {r['confident_per_class']}"
             if "prior_draws" in r else "")
    drawn += f", argmax per class {r['argmax_per_class']}" if "argmax_per_class" in r else ""
    click.echo(f"latents {name}: {r['n_train']} train / {r['n_test']} test, dim {r['latent_dim']}, "
               f"key {r['key'][:12]}{drawn}")
