from __future__ import annotations

from ltrans.ablations import LABEL_BUDGETS, ladder, variants
from ltrans.presets import paper


def test_the_ladder_switches_on_one_term_per_rung():
    rungs = dict(ladder(paper("mnist_mnist")))
    assert list(rungs) == ["ae", "vae", "vae+swd", "full"]
    on = {name: tuple(getattr(c.bridge, b) > 0 for b in ("beta_kl", "beta_swd", "beta_cls"))
          for name, c in rungs.items()}
    assert on == {"ae": (False, False, False), "vae": (True, False, False),
                  "vae+swd": (True, True, False), "full": (True, True, True)}
    assert rungs["ae"].bridge.sample_posterior is False
    steps = {c.bridge.steps for c in rungs.values()}
    assert steps == {paper("mnist_mnist").bridge.steps}          # same budget on every rung


def test_label_budget_pairs_bridge_and_procrustes_on_the_same_labels():
    rows = variants(paper("mnist_animals"), ("labels",))
    bridges = [c.bridge.n_sup for _, n, c in rows if c.method == "bridge"]
    procrustes = [c.bridge.n_sup for _, n, c in rows if c.method == "procrustes"]
    assert bridges == list(LABEL_BUDGETS) and procrustes == [n for n in LABEL_BUDGETS if n != 0]
    assert len({c for _, _, c in variants(paper("mnist_mnist"))}) == len(variants(paper("mnist_mnist")))
