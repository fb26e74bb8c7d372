from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from ltrans.ablations import LABEL_BUDGETS, ladder, over_seeds, summarise, variants
from ltrans.bridge.toy import toy_pair
from ltrans.bridge.train import labelled_subsets, train_bridge
from ltrans.config import override
from ltrans.errors import UserError
from ltrans.presets import paper


def test_the_ladder_switches_on_one_term_per_rung():
    rungs = dict(ladder(paper("mnist_mnist")))
    assert list(rungs) == ["ae", "vae", "vae+swd", "full"]
    on = {name: tuple(getattr(c.bridge, b) > 0 for b in ("beta_kl", "beta_swd", "beta_cls"))
          for name, c in rungs.items()}
    assert on == {"ae": (False, False, False), "vae": (True, False, False),
                  "vae+swd": (True, True, False), "full": (True, True, True)}
    assert rungs["ae"].bridge.sample_posterior is False and rungs["ae"].bridge.sample_code is False
    assert all(c.bridge.sample_code for name, c in rungs.items() if name != "ae")
    steps = {c.bridge.steps for c in rungs.values()}
    assert steps == {paper("mnist_mnist").bridge.steps}          # same budget on every rung


def test_label_budget_pairs_bridge_and_procrustes_on_the_same_labels():
    rows = variants(paper("mnist_animals"), ("labels",))
    bridges = [c.bridge.n_sup for _, n, c in rows if c.method == "bridge"]
    procrustes = [c.bridge.n_sup for _, n, c in rows if c.method == "procrustes"]
    assert bridges == list(LABEL_BUDGETS) and procrustes == [n for n in LABEL_BUDGETS if n != 0]
    assert len({c for _, _, c in variants(paper("mnist_mnist"))}) == len(variants(paper("mnist_mnist")))


@pytest.mark.parametrize("budget", [0, 10])
def test_a_label_budget_bridge_reads_no_label_beyond_its_budget(budget, monkeypatch):
    # Which rows are labelled is the experiment's choice (class-balanced, so it reads the labels);
    # with that choice pinned, scrambling every other label changes nothing the bridge does, bit for bit.
    config = {name: c for _, name, c in variants(paper("mnist_mnist"), ("labels",))}[f"bridge n_sup={budget}"]
    cfg = replace(config.bridge, shared_dim=3, n_layers=2, width=16, batch_size=32, n_projections=4, steps=30)
    pair = toy_pair(n_per_class=30, dim=6, rotation_seed=0, noise=0.3, seed=0, posterior_std=0.1)
    a, b = pair.latents_a, pair.latents_b
    ia, ib = labelled_subsets(a.y, b.y, cfg.n_sup, config.seed)

    def scrambled(lat, keep):
        y = torch.randint(10, lat.y.shape, generator=torch.Generator().manual_seed(1))
        y[keep] = lat.y[keep]
        assert (y != lat.y).sum() > len(y) // 2
        return replace(lat, y=y)

    monkeypatch.setattr("ltrans.bridge.train.labelled_subsets", lambda *_: (ia, ib))
    want = train_bridge(cfg, a, b, seed=config.seed)
    got = train_bridge(cfg, scrambled(a, ia), scrambled(b, ib), seed=config.seed)
    assert want.status == got.status == "ok"
    assert all(torch.equal(p, q) for p, q in zip(want.model.parameters(), got.model.parameters()))
    # ...whereas the paper's class-balanced batches (kept for "all") do read them.
    balanced = replace(cfg, balanced_batches=True)
    one = train_bridge(balanced, a, b, seed=config.seed).model.parameters()
    two = train_bridge(balanced, scrambled(a, ia), scrambled(b, ib), seed=config.seed).model.parameters()
    assert not all(torch.equal(p, q) for p, q in zip(one, two))


def test_variants_by_name_keep_study_order_survive_deduplication_and_refuse_unknown_names():
    base = paper("mnist_mnist")
    kept = variants(base, ("labels",), ["procrustes n_sup=100", "bridge n_sup=100"])
    assert [name for _, name, _ in kept] == ["bridge n_sup=100", "procrustes n_sup=100"]
    assert variants(base, ("labels",), []) == variants(base, ("labels",))
    # "trained classifier" is the ladder's "full" config, dropped as a duplicate from the full list, yet
    # asking for it by name finds it.
    assert "trained classifier" not in [name for _, name, _ in variants(base)]
    (study, name, cfg), = variants(base, names=["trained classifier"])
    assert (study, name, cfg) == ("classifier", "trained classifier", base)
    with pytest.raises(UserError, match="'bridge n_sup=7'.*'bridge n_sup=all'"):
        variants(base, ("labels",), ["bridge n_sup=7"])


def test_over_seeds_repeats_every_variant_with_consecutive_seeds_seed_major():
    base = override(paper("mnist_mnist"), {"seed": 5})
    rows = variants(base, ("classifier",))
    runs = over_seeds(rows, 3)
    assert [(name, cfg.seed) for _, name, cfg in runs] == [
        (name, seed) for seed in (5, 6, 7) for name in ("trained classifier", "frozen classifier")]
    for (_, _, cfg), (_, _, again) in zip(runs, runs[2:]):  # only the seed differs between repeats
        assert override(again, {"seed": cfg.seed}) == cfg
    with pytest.raises(UserError, match="--seeds"):
        over_seeds(rows, 0)


def test_summarise_gives_mean_and_sample_std_of_the_ok_runs_per_variant():
    def row(variant, seed, ab, ba, status="ok"):
        return {"study": "labels", "variant": variant, "seed": seed, "status": status,
                "transfer_a_to_b": ab, "transfer_b_to_a": ba}

    rows = [row("bridge", 0, 0.8, 0.7), row("procrustes", 0, 0.5, 0.5), row("bridge", 1, 0.9, 0.9),
            row("bridge", 2, float("nan"), float("nan"), status="failed"), row("procrustes", 1, 0.6, 0.5)]
    bridge, procrustes = summarise(rows)
    assert (bridge["variant"], bridge["seeds"], bridge["n_ok"]) == ("bridge", [0, 1, 2], 2)
    assert bridge["transfer_a_to_b_mean"] == pytest.approx(0.85)
    assert bridge["transfer_a_to_b_std"] == pytest.approx(math.sqrt(0.005))  # (0.05^2 * 2) / (2 - 1)
    assert bridge["transfer_b_to_a_std"] == pytest.approx(math.sqrt(0.02))
    assert procrustes["transfer_b_to_a_std"] == 0.0 and procrustes["transfer_a_to_b_mean"] == pytest.approx(0.55)
    single, = summarise([row("bridge", 0, 0.8, 0.7)])
    assert single["transfer_a_to_b_mean"] == 0.8 and math.isnan(single["transfer_a_to_b_std"])
    none_ok, = summarise([row("bridge", 0, 0.8, 0.7, status="failed")])
    assert none_ok["n_ok"] == 0 and math.isnan(none_ok["transfer_a_to_b_mean"])
