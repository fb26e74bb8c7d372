"""The one path: ``run_trial(config, data) -> MetricsRow`` (DESIGN.md section 3).

``load_pair`` prepares everything frozen a trial needs (base models, classifiers, cached latents,
real-data features) once per process; ``run_trial`` trains one bridge (or fits the Procrustes
baseline) and evaluates it in data space. The CLI, sweeps, benchmarks and tests all call these two.
Ray is never imported here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ltrans.bridge.config import BridgeConfig
from ltrans.bridge.procrustes import fit_procrustes
from ltrans.bridge.train import BridgeResult, _non_finite, train_bridge, translate_latents
from ltrans.config import MAX_SEED
from ltrans.metrics.row import MetricsRow, config_hash, git_sha
from ltrans.metrics.transfer import Side, evaluate
from ltrans.pairs import PAIRS

# A row records the commit of the code that ran: the checkout's as this module is imported (git_sha keeps
# its first answer), not the HEAD when a trial of hours ends after a commit in between.
git_sha()

METHODS = ("bridge", "procrustes")
PROCRUSTES = ("orthogonal", "lstsq")  # ltrans.bridge.procrustes.fit_procrustes's methods


@dataclass(frozen=True)
class TrialConfig:
    """One trial: a pair, a method, the bridge setting and a seed. Defaults: the paper's bridge."""

    pair: str = "mnist_mnist"
    method: str = "bridge"
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    seed: int = 0
    n_eval: int = 1000  # class-balanced held-out examples per direction (all if fewer)
    procrustes: str = "orthogonal"  # or "lstsq"; only for method == "procrustes"
    base: str = "full"  # base-model preset: "full", or "tiny" (seconds to train; tests and smoke runs)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.procrustes not in PROCRUSTES:  # whatever the method: a typo is refused, not hashed
            raise ValueError(f"procrustes must be one of {PROCRUSTES}, got {self.procrustes!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED} (2**32 - 1), got {self.seed}")
        if self.n_eval < 10:
            raise ValueError(f"n_eval must be >= 10, got {self.n_eval}")
        if self.base not in ("full", "tiny"):
            raise ValueError(f"base must be 'full' or 'tiny', got {self.base!r}")
        classes = pair_classes(self.pair)  # unknown pair -> UserError listing the known ones
        if self.bridge.n_classes != classes:  # fewer fails every trial on labels >= n_classes
            raise ValueError(f"bridge.n_classes must be {classes}, the number of classes of pair {self.pair}'s "
                             f"domains; set bridge.n_classes={classes}")


def pair_classes(pair: str) -> int:
    """How many classes the domains of ``pair`` have (the bridge's classifier predicts that many)."""
    from ltrans.data import DATASETS
    from ltrans.models import BASE_MODELS  # the package import fills the registry

    record = PAIRS[pair]
    return max(DATASETS[BASE_MODELS[name].domain].n_classes for name in (record.a, record.b))


@dataclass(frozen=True)
class PairData:
    """Everything frozen a trial of one pair needs."""

    pair: str
    a: Side
    b: Side


def _side(model_name: str, *, store, preset: str, device: str, progress: bool) -> Side:
    from ltrans.data import load_split
    from ltrans.latents import latent_dataset
    from ltrans.models import zoo
    from ltrans.models.base import BASE_MODELS
    from ltrans.models.space import to_model_space

    spec = BASE_MODELS[model_name]
    base = zoo.base_model(model_name, store=store, preset=preset, device=device, progress=progress)
    clf = zoo.classifier(spec.domain, store=store, preset=preset, device=device, progress=progress)
    latents = latent_dataset(model_name, store=store, preset=preset, device=device, progress=progress)
    real = to_model_space(spec.domain, load_split(spec.domain, store=store).test.x)
    with torch.no_grad():
        feats = torch.cat([clf.module.features(c.to(device)).cpu() for c in real.split(500)]).numpy()
    return Side(model_name, spec.domain, base.module, clf.module, latents, feats)


def load_pair(pair: str, *, store=None, preset: str = "full", device: str = "cpu",
              progress: bool = False) -> PairData:
    """Frozen models, classifiers and latents of both sides of ``pair`` (trained/built if missing)."""
    from ltrans.artifacts import Store

    store = store or Store()
    record = PAIRS[pair]
    kw = {"store": store, "preset": preset, "device": device, "progress": progress}
    return PairData(pair, _side(record.a, **kw), _side(record.b, **kw))


def run_trial(cfg: TrialConfig, data: PairData, *, device: str = "cpu", on_eval=None,
              should_stop=None, progress: bool = False) -> tuple[MetricsRow, Any]:
    """Train (or fit) one translator and evaluate it. Returns the row and the trained translator.

    A diverging trial (NaN/inf) returns a row with status "failed" and its reason; it never raises.
    ``progress``: a bar while the bridge trains and a line on stderr when the evaluation starts.
    """
    if cfg.pair != data.pair:
        raise ValueError(f"config is for pair {cfg.pair!r} but the data is for {data.pair!r}")
    resolved = dataclasses.asdict(cfg)
    if cfg.method == "procrustes":
        return _run_procrustes(cfg, data, resolved)
    result = train_bridge(cfg.bridge, data.a.latents.train, data.b.latents.train, seed=cfg.seed,
                          device=device, on_eval=on_eval, should_stop=should_stop, progress=progress)
    if progress and result.status == "ok":
        print(f"trained in {result.wall_s:.0f} s; evaluating on held-out latents (transfer, FID, interpolation) ...",
              file=sys.stderr, flush=True)
    return bridge_row(cfg, data, result), result


def bridge_row(cfg: TrialConfig, data: PairData, result: BridgeResult) -> MetricsRow:
    """The metrics row of a trained bridge, evaluated when it ended ok (also used by packed sweeps)."""
    status = {"ok": "ok", "stopped": "pruned", "failed": "failed"}[result.status]
    metrics: dict[str, Any] = {f"loss_{k}": v for k, v in result.losses.items()}
    eval_seconds = 0.0
    if status == "ok" and (bad := _held_out_problem(data)):
        status, result = "failed", dataclasses.replace(result, reason=bad)
    if status == "ok":
        start = time.perf_counter()
        metrics |= _evaluate_bridge(result, data, cfg)
        eval_seconds = time.perf_counter() - start
        if bad := _non_finite_metrics(metrics):
            status, result = "failed", dataclasses.replace(result, reason=bad)
    return MetricsRow(cfg.pair, cfg.method, cfg.seed, config_hash(dataclasses.asdict(cfg)), status, result.reason,
                      result.steps, result.wall_s, eval_seconds, git_sha(), metrics)


def _held_out_problem(data: PairData) -> str:
    """Why the held-out latents cannot be evaluated on (non-finite values), or ''."""
    bad = _non_finite(data.a.latents.test, data.b.latents.test)
    return f"held-out {bad}" if bad else ""


def _non_finite_metrics(metrics: dict[str, Any]) -> str:
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    return f"non-finite metrics: {bad}" if bad else ""


def _evaluate_bridge(result: BridgeResult, data: PairData, cfg: TrialConfig) -> dict[str, Any]:
    model = result.model

    def translate(z: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        return translate_latents(model, z, src, dst)

    def sample_joint(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        code = torch.randn(n, cfg.bridge.shared_dim, generator=generator)
        device = next(model.parameters()).device
        with torch.no_grad():
            return model.decode(code.to(device), "a"), model.decode(code.to(device), "b")

    return evaluate(translate, data.a, data.b, n_eval=cfg.n_eval, sample_joint=sample_joint)


def _run_procrustes(cfg: TrialConfig, data: PairData, resolved: dict) -> tuple[MetricsRow, Any]:
    def failed(reason: str, fit_s: float, eval_s: float = 0.0, metrics: dict | None = None) -> tuple[MetricsRow, None]:
        return MetricsRow(cfg.pair, cfg.method, cfg.seed, config_hash(resolved), "failed", reason, 0, fit_s, eval_s,
                          git_sha(), metrics or {}), None

    start = time.perf_counter()
    train_a, train_b = data.a.latents.train, data.b.latents.train
    if bad := _non_finite(train_a, train_b) or _held_out_problem(data):
        return failed(bad, 0.0)
    try:
        fitted = fit_procrustes(train_a, train_b, n_sup=cfg.bridge.n_sup, seed=cfg.seed, method=cfg.procrustes)
    except (ValueError, torch.linalg.LinAlgError) as err:  # e.g. n_sup = 0: nothing to fit on
        return failed(str(err), time.perf_counter() - start)
    fit_seconds = time.perf_counter() - start

    def translate(z: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        if src == dst:
            return z
        return fitted.a_to_b(z) if src == "a" else fitted.b_to_a(z)

    start = time.perf_counter()
    metrics = evaluate(translate, data.a, data.b, n_eval=cfg.n_eval, with_reconstruction=False)
    if bad := _non_finite_metrics(metrics):
        return failed(bad, fit_seconds, time.perf_counter() - start, metrics)
    row = MetricsRow(cfg.pair, cfg.method, cfg.seed, config_hash(resolved), "ok", "", 0, fit_seconds,
                     time.perf_counter() - start, git_sha(), metrics)
    return row, fitted

