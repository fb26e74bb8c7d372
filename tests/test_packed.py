"""Packed training (ltrans/bridge/packed.py): members train like unpacked bridges and never touch each other."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from ltrans import faults
from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.packed import Member, Pack, train_pack
from ltrans.bridge.toy import toy_pair
from ltrans.bridge.train import train_bridge
from ltrans.latents import Latents

BASE = BridgeConfig(shared_dim=3, n_layers=2, width=16, batch_size=32, n_projections=4, steps=40, eval_every=10)
# Every per-member setting a pack allows to differ: learning rate, loss weights, label budget, seed,
# step budget and the batch/posterior/code-sampling switches.
VARIED = [{}, {"lr": 3e-3, "beta_kl": 0.0}, {"n_sup": 0, "beta_swd": 0.3}, {"beta_cls": 0.0, "steps": 25},
          {"sample_posterior": False, "beta_swd": 0.0}, {"balanced_batches": False, "lr": 5e-4, "steps": 33},
          {"sample_code": False, "beta_kl": 0.0}]


@pytest.fixture(autouse=True)
def one_thread():
    """Bitwise agreement holds with one intra-op thread (a sweep worker's setting; see stacked.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    return toy_pair(n_per_class=30, dim=6, rotation_seed=0, noise=0.3, seed=0, posterior_std=0.1)


def members(changes: list[dict], seeds=None) -> list[Member]:
    seeds = seeds or range(len(changes))
    return [Member(dataclasses.replace(BASE, **c), seed=s) for c, s in zip(changes, seeds, strict=True)]


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def without_clock(curve: list[dict]) -> list[dict]:
    return [{k: v for k, v in point.items() if k != "wall_s"} for point in curve]


def test_each_member_trains_bitwise_like_its_unpacked_bridge(pair):
    # The last member (a label subset) only agrees to rounding (next test); it must not disturb the rest.
    pack = members(VARIED + [{"n_sup": 25}], seeds=[5, 1, 2, 3, 4, 0, 7, 6])
    for m, got in list(zip(pack, train_pack(pack, pair.latents_a, pair.latents_b)))[:-1]:
        want = train_bridge(m.cfg, pair.latents_a, pair.latents_b, seed=m.seed)
        assert (got.status, got.steps, got.reason) == (want.status, want.steps, want.reason) == ("ok", m.cfg.steps, "")
        assert same_weights(got, want), m
        assert got.losses == want.losses and without_clock(got.curve) == without_clock(want.curve)


def test_a_members_time_is_its_share_of_the_packs_training_not_the_whole_pack(pair):
    # Six members; the callbacks (evaluation in a sweep) sleep, and count for no member. The members'
    # times add up to the pack's training time, and one that leaves early is charged less.
    pack, pause = members([{}] * 5 + [{"steps": 10}]), 0.05
    began = time.perf_counter()
    results = train_pack(pack, pair.latents_a, pair.latents_b, on_eval=lambda *_: time.sleep(pause))
    training = time.perf_counter() - began - pause * sum(len(r.curve) for r in results)
    assert 0.5 * training < sum(r.wall_s for r in results) <= training + 1e-3
    assert all(results[-1].wall_s < r.wall_s for r in results[:-1])
    for r in results:
        times = [point["wall_s"] for point in r.curve]
        assert times == sorted(times) and 0 < times[-1] <= r.wall_s


def test_a_member_failing_at_a_step_is_charged_its_share_of_that_step(pair, monkeypatch):
    # A slow step (a fault injected into the update: 0.1 s) shared by two members; the one whose loss is
    # inf at step 1 ends before the update, as train_bridge does, but step 1 was still half its time.
    slow = Pack.adam

    def adam(self):
        time.sleep(0.1)
        slow(self)

    monkeypatch.setattr(Pack, "adam", adam)
    pack = members([{"steps": 3}, {"beta_kl": 1e308, "beta_swd": 1e308}])
    calm, wild = train_pack(pack, pair.latents_a, pair.latents_b)
    assert (wild.status, wild.reason) == ("failed", "loss became inf at step 1")
    assert wild.wall_s >= 0.05 and calm.wall_s >= 0.05 + 2 * 0.1


def test_label_subset_members_agree_to_float_rounding(pair):
    # A label subset's rows are encoded in one pass with the batch (rounding differs), see stacked.py.
    pack = members([{"n_sup": 25}, {"n_sup": 7, "balanced_batches": False}, {"n_sup": 40, "lr": 3e-3}])
    for m, got in zip(pack, train_pack(pack, pair.latents_a, pair.latents_b)):
        want = train_bridge(m.cfg, pair.latents_a, pair.latents_b, seed=m.seed)
        for p, q in zip(got.model.parameters(), want.model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
        assert got.losses.keys() == want.losses.keys() == {"recon", "kl", "swd", "cls", "total"}
        assert got.losses == pytest.approx(want.losses, rel=1e-4)


@pytest.mark.parametrize("changes", [
    [{"beta_cls": 0.0}, {"n_sup": 0, "lr": 3e-3}],  # no member ever uses the latent classifier
    [{"steps": 20}, {"n_sup": 0}],  # the only member that uses it leaves at step 20
])
def test_a_pack_whose_active_members_leave_the_classifier_unused_trains_like_unpacked(pair, changes):
    # The classifier's stacked weights then get no gradient at all; torch's Adam skips such a parameter.
    pack = members(changes)
    for m, got in zip(pack, train_pack(pack, pair.latents_a, pair.latents_b)):
        want = train_bridge(m.cfg, pair.latents_a, pair.latents_b, seed=m.seed)
        assert (got.status, got.steps) == (want.status, want.steps) == ("ok", m.cfg.steps)
        assert same_weights(got, want), m


def test_gradients_of_one_member_are_zero_in_every_other_members_slice(pair):
    pack = Pack(members([{}, {"lr": 3e-3}, {"n_sup": 20}]), pair.latents_a, pair.latents_b)
    total, _ = pack.losses(*pack.draw())
    params = [p for p in pack.params.values() if p.requires_grad]
    for i in range(3):
        grads = torch.autograd.grad(total[i], params, retain_graph=True)
        for g in grads:
            others = torch.cat([g[:i], g[i + 1:]])
            assert torch.equal(others, torch.zeros_like(others))
        assert all(bool(g[i].abs().sum() > 0) for g in grads[:4])  # and its own slice does learn


def test_a_diverging_member_fails_alone_and_the_others_are_bitwise_unchanged(pair):
    calm = train_pack(members([{}, {"beta_swd": 0.3}, {"lr": 3e-3}]), pair.latents_a, pair.latents_b)
    wild = train_pack(members([{}, {"lr": 1e9}, {"lr": 3e-3}]), pair.latents_a, pair.latents_b)
    assert wild[1].status == "failed" and "at step" in wild[1].reason and 0 < wild[1].steps < BASE.steps
    for k in (0, 2):
        assert wild[k].status == "ok" and same_weights(wild[k], calm[k]) and wild[k].losses == calm[k].losses


def test_should_stop_stops_one_member_and_callbacks_come_in_order(pair):
    pack = members([{}, {"lr": 2e-3}, {"beta_kl": 0.0}])
    log: list[tuple] = []
    results = Pack(pack, pair.latents_a, pair.latents_b).run(
        on_eval=lambda k, step, metrics: log.append(("eval", step, k)),
        should_stop=lambda k, step, metrics: log.append(("stop?", step, k)) or (k == 1 and step >= 20),
        on_end=lambda k, result: log.append(("end", result.steps, k)),
        after_step=lambda step: log.append(("after", step)))
    assert [r.status for r in results] == ["ok", "stopped", "ok"] and results[1].steps == 20
    assert results[1].reason == "should_stop at step 20" and len(results[1].curve) == 2
    assert log[:7] == [("eval", 10, 0), ("eval", 10, 1), ("eval", 10, 2),
                       ("stop?", 10, 0), ("stop?", 10, 1), ("stop?", 10, 2), ("after", 10)]
    assert ("end", 20, 1) in log and log.index(("end", 20, 1)) < log.index(("after", 20))
    want = train_bridge(pack[2].cfg, pair.latents_a, pair.latents_b, seed=pack[2].seed)
    assert same_weights(results[2], want)  # the pack shrank; the rest trained on unchanged


def test_members_of_different_shapes_cannot_share_a_pack(pair):
    with pytest.raises(ValueError, match="width"):
        Pack(members([{}, {"width": 32}]), pair.latents_a, pair.latents_b)


def test_non_finite_latents_fail_every_member_with_the_reason(pair):
    mu = pair.latents_a.mu.clone()
    mu[0, 0] = float("nan")
    bad = Latents(mu, pair.latents_a.std, pair.latents_a.y)
    results = train_pack(members([{}, {"lr": 2e-3}]), bad, pair.latents_b)
    assert [(r.status, r.steps) for r in results] == [("failed", 0), ("failed", 0)]
    assert all("latents_a.mu" in r.reason for r in results)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_pack_trains_on_cuda_like_on_the_cpu(pair):
    pack = members([{}, {"lr": 3e-3}, {"n_sup": 20}])
    cuda = train_pack(pack, pair.latents_a, pair.latents_b, device="cuda")
    for m, got in zip(pack, cuda):
        want = train_bridge(m.cfg, pair.latents_a, pair.latents_b, seed=m.seed, device="cuda")
        assert got.status == "ok" and next(got.model.parameters()).device.type == "cuda"
        assert got.losses == pytest.approx(want.losses, rel=1e-3)


def test_an_injected_fault_in_one_member_raises_out_of_the_pack(pair, monkeypatch):
    # The sweep then re-runs the pack's members one at a time (tests/test_sweep_packed_run.py).
    monkeypatch.setenv(faults.ENV, "bridge.lr=0.003")
    with pytest.raises(faults.InjectedFault):
        Pack(members([{}, {"lr": 3e-3}]), pair.latents_a, pair.latents_b).run()
    assert all(r.status == "ok" for r in Pack(members([{}, {"lr": 5e-4}]), pair.latents_a, pair.latents_b).run())
