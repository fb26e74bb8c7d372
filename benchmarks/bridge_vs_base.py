"""Bridge vs base models: each base model's full training time against the bridge's, to 95% of its final
transfer accuracy and in full, and the FLOP-count projection to the paper's scale (DESIGN.md section 1,
"Speed claim").

    python benchmarks/bridge_vs_base.py                        # mnist_mnist, full base models, paper bridge
    python benchmarks/bridge_vs_base.py --pairs mnist_mnist mnist_animals mnist_vae_gan
    python benchmarks/bridge_vs_base.py --quick                # tiny base models, smoke bridge: ~a minute

Cost on 2 busy CPU cores: the paper bridge is 4,000 steps of 4x512 MLPs (about 10 minutes a pair); base
models the run has to train take 5-20 minutes each (cached base models keep the time recorded when
they were trained, with its device and torch version: see the ``measured`` column; a warning line names a
base model recorded on another device, or thread count where the record has one, than this run's).
The table gives two ratios: ``base full / bridge to 95%`` (a base model's full training over the bridge's
time to 95% of its final accuracy: the two stop at different points) and ``base full / bridge full``
(both trained to the end: like for like).
Base models and classifiers come from ``ltrans.models.zoo`` (trained once, their wall time recorded);
the bridge trains with ``ltrans.bridge.packed`` (one member; the same steps as ``train_bridge``) and its
transfer accuracy is measured at 16 points (``ltrans.metrics.transfer``, 1,000 held-out examples a
direction), evaluation time excluded. Encoding the training set into latents is timed too.
Projection: FLOPs per training step counted by torch's FlopCounterMode (base: two runs of the base
model's own train function, 2 and 4 steps, differenced; bridge: one step), scaled to 200k base steps,
20k bridge steps and 60k encoded images (a GAN: 70k decoded and classified prior samples, the
paper's >= 7,000 a class), and turned into hours at the rates this run achieved.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import add_common_args, count_flops, machine, setup, table, write_json

PAPER_SCALE = {"base_steps": 200_000, "bridge_steps": 20_000, "images": 60_000, "gan_samples": 70_000}
POINTS = 16  # transfer accuracy measured at this many points of the bridge's training


def base_rows(pair: str, preset: str, store, device: str) -> list[dict]:
    """Each base model of ``pair``: its recorded training time, latent encoding time and FLOPs."""
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS
    from ltrans.pairs import PAIRS

    rows = []
    for name in (PAIRS[pair].a, PAIRS[pair].b):
        spec, trained = BASE_MODELS[name], zoo.base_model(name, store=store, preset=preset, device=device)
        record = trained.record
        config = spec.config if preset == "full" else spec.tiny
        step_flops = base_step_flops(spec, config, store, device)
        encode_s, encode_flops, n_encoded = encoding(spec, trained.module, preset, store, device)
        rows.append({"pair": pair, "model": name, "kind": spec.kind, "steps": config.steps,
                     "train s": record["train_seconds"],
                     "measured": f"{record.get('device', '?')}, torch {record.get('torch', '?')}",
                     "train device": record.get("device"), "train threads": record.get("threads"),
                     "latents s": encode_s, "n encoded": n_encoded, "step GFLOP": step_flops / 1e9,
                     "encode GFLOP/example": encode_flops / 1e9,
                     "base GFLOP/s": step_flops * config.steps / record["train_seconds"] / 1e9})
    return rows


def base_step_flops(spec, config, store, device: str) -> float:
    """FLOPs of one training step of a base model: its train function at 4 steps minus at 2, halved."""
    from ltrans.data import load_split

    split = load_split(spec.domain, store=store)
    runs = [count_flops(lambda s=s: spec.train(dataclasses.replace(config, steps=s), split, seed=0, device=device,
                                               progress=False)) for s in (2, 4)]
    return (runs[1] - runs[0]) / 2


def encoding(spec, module, preset: str, store, device: str) -> tuple[float, float, int]:
    """Seconds to build the training latents now, FLOPs per example, and how many examples."""
    from ltrans.data import load_split
    from ltrans.latents import GAN_SELECTION, gan_selection, vae_latents
    from ltrans.models import zoo
    from ltrans.models.space import to_model_space

    if spec.kind == "vae":
        split = load_split(spec.domain, store=store)
        x, y = to_model_space(spec.domain, split.train.x), torch.from_numpy(split.train.y)
        start = time.perf_counter()
        vae_latents(module, x, y)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            flops = count_flops(lambda: module.encode(x[:64].to(device))) / 64
        return seconds, flops, len(x)
    clf = zoo.classifier(spec.domain, store=store, preset=preset, device=device).module
    selection = GAN_SELECTION[preset]
    start = time.perf_counter()
    draws = gan_selection(module, clf, n_samples=selection.samples, keep_per_class=selection.keep, seed=0,
                          min_confidence=selection.min_confidence, max_samples=selection.max_samples,
                          candidates_per_class=selection.candidates)
    seconds = time.perf_counter() - start
    z = torch.randn(64, spec.latent_dim, device=device)
    with torch.no_grad():
        flops = count_flops(lambda: clf(module.decode(z))) / 64
    return seconds, flops, draws.drawn  # every prior draw was decoded and classified


def bridge_run(pair: str, cfg, data, device: str) -> dict:
    """Train the pair's bridge, measuring transfer accuracy at POINTS points (evaluation time excluded)."""
    from ltrans.bridge.packed import Member, Pack
    from ltrans.bridge.train import translate_latents
    from ltrans.metrics.transfer import EVAL_SEED, balanced_index, direction_metrics

    bridge = dataclasses.replace(cfg.bridge, eval_every=max(1, cfg.bridge.steps // POINTS))
    z = {s: side.latents.test.mu[balanced_index(side.latents.test.y, cfg.n_eval, EVAL_SEED)]
         for s, side in (("a", data.a), ("b", data.b))}
    # Our own clock, from before the pack is built (its setup counts, as train_bridge's wall_s counts
    # it) to each point, less the evaluations so far: it does not depend on what the pack's wall_s counts.
    start, curve, paused = time.perf_counter(), [], [0.0]
    pack = Pack([Member(bridge, cfg.seed)], data.a.latents.train, data.b.latents.train, device)

    def on_eval(k: int, step: int, metrics: dict) -> None:
        began = time.perf_counter()
        model = pack.bridge(0)
        translate = lambda x, src, dst: translate_latents(model, x, src, dst)
        acc = [direction_metrics(translate, src, dst, s, d, z[s])[f"transfer_{s}_to_{d}"]
               for src, dst, s, d in ((data.a, data.b, "a", "b"), (data.b, data.a, "b", "a"))]
        model.train()
        curve.append({"step": step, "train_s": began - start - paused[0], "transfer": sum(acc) / 2})
        paused[0] += time.perf_counter() - began

    pack.run(on_eval=on_eval)
    counter = Pack([Member(bridge, cfg.seed)], data.a.latents.train, data.b.latents.train, device)
    flops = count_flops(lambda: counter.losses(*counter.draw())[0].sum().backward())
    return {"pair": pair, "steps": bridge.steps, **curve_times(curve), "step GFLOP": flops / 1e9,
            "bridge GFLOP/s": flops * bridge.steps / curve[-1]["train_s"] / 1e9, "curve": curve}


def curve_times(curve: list[dict]) -> dict:
    """The bridge's final accuracy, the first point at 95% of it (step, training seconds) and its full time."""
    final = curve[-1]["transfer"]
    reach = next(p for p in curve if p["transfer"] >= 0.95 * final)
    return {"final transfer": final, "steps to 95%": reach["step"], "bridge to 95% s": reach["train_s"],
            "bridge full s": curve[-1]["train_s"]}


def side_by_side(models: list[dict], bridge: dict) -> list[dict]:
    """Each base model's row with the bridge's times and two ratios of the base model's full training time:
    over the bridge's time to 95% of its final accuracy, and over the bridge's full run (like for like)."""
    return [m | {"steps to 95%": bridge["steps to 95%"], "bridge to 95% s": bridge["bridge to 95% s"],
                 "bridge full s": bridge["bridge full s"], "final transfer": bridge["final transfer"],
                 "base full / bridge to 95%": m["train s"] / bridge["bridge to 95% s"],
                 "base full / bridge full": m["train s"] / bridge["bridge full s"]} for m in models]


def provenance_warnings(models: list[dict], device: str, threads: int) -> list[str]:
    """A line for each base model whose recorded training ran on another device or thread count (where its
    record says) than this run's bridge: its ratios then compare times measured under different settings."""
    lines = []
    for m in models:
        differs = [f"{what} {was} (this run: {now})" for what, was, now in
                   (("device", m["train device"], device), ("threads", m["train threads"], threads))
                   if was is not None and was != now]
        if differs:
            lines.append(f"warning: {m['pair']} {m['model']}'s train s was recorded when it was trained, on "
                         f"{', '.join(differs)}; its ratios compare runs under different settings")
    return lines


def projection(pair: str, models: list[dict], bridge: dict) -> dict:
    """FLOPs and hours at the paper's scale, at the FLOP rates this run achieved."""
    scale = PAPER_SCALE
    base = sum(m["step GFLOP"] * scale["base_steps"] for m in models)
    base_h = sum(m["step GFLOP"] * scale["base_steps"] / m["base GFLOP/s"] for m in models) / 3600
    encode = [(m["encode GFLOP/example"] * (scale["images"] if m["kind"] == "vae" else scale["gan_samples"]),
               m["encode GFLOP/example"] * m["n encoded"] / m["latents s"]) for m in models]
    train = bridge["step GFLOP"] * scale["bridge_steps"]
    bridge_total = train + sum(f for f, _ in encode)
    bridge_h = (train / bridge["bridge GFLOP/s"] + sum(f / rate for f, rate in encode)) / 3600
    return {"pair": pair, "base PFLOP": base / 1e6, "bridge PFLOP": bridge_total / 1e6,
            "x fewer FLOPs": base / bridge_total, "base h": base_h, "bridge h": bridge_h,
            "x faster": base_h / bridge_h}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "bridge_vs_base")
    parser.add_argument("--pairs", nargs="+", default=["mnist_mnist"], help="pairs to measure")
    args = parser.parse_args(argv)
    device = setup(args)
    from ltrans.artifacts import Store
    from ltrans.pipeline import load_pair
    from ltrans.presets import paper, smoke

    store, preset = Store(), "tiny" if args.quick else "full"
    measured, projected, bridges = [], [], []
    for pair in args.pairs:
        print(f"{pair}: base models and latents ({preset}; trained now unless cached) ...", flush=True)
        data = load_pair(pair, store=store, preset=preset, device=device)
        models = base_rows(pair, preset, store, device)
        cfg = smoke(pair) if args.quick else paper(pair)
        print(f"{pair}: bridge, {cfg.bridge.steps} steps ...", flush=True)
        bridge = bridge_run(pair, cfg, data, device)
        bridges.append(bridge)
        measured += side_by_side(models, bridge)
        projected.append(projection(pair, models, bridge))
    threads = machine(device)["threads"]
    print(f"\nmeasured on {device} ({threads} threads), {preset} base models\n")
    print(table(measured, ["pair", "model", "kind", "steps", "train s", "measured", "latents s", "steps to 95%",
                           "bridge to 95% s", "bridge full s", "base full / bridge to 95%", "base full / bridge full",
                           "final transfer"]))
    warnings = provenance_warnings(measured, device, threads)
    if warnings:
        print("\n" + "\n".join(warnings))
    print("\nprojected to the paper's scale: 200k base steps, 20k bridge steps, 60k encoded images\n")
    print(table(projected, list(projected[0])))
    payload = {"benchmark": "bridge_vs_base", "quick": args.quick, "machine": machine(device), "preset": preset,
               "paper_scale": PAPER_SCALE, "measured": measured, "projected": projected, "bridges": bridges,
               "warnings": warnings}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
