"""Train each frozen base model and domain classifier once, keep it in the artifact store, load it.

The store key names everything that fixes the weights and the record: the spec name, its resolved
config, the seed, the preset, a fingerprint of the training and test data (the record's figures are
measured on the test split) and, for audio, the spectrogram settings. The record beside the weights keeps
the training config, final figures and the wall-clock training time (the speed comparison needs it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ltrans.artifacts import Store, make_key
from ltrans.errors import UserError
from ltrans.files import atomic_write_json
from ltrans.models.base import BASE_MODELS, CLASSIFIERS
from ltrans.models.space import fingerprint, model_space_settings

FORMAT = 1
PRESETS = ("full", "tiny")


@dataclass(frozen=True)
class Trained:
    """A frozen module with its record (config, figures, train_seconds, key)."""

    module: nn.Module
    record: dict[str, Any]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when present, else ``cpu``; ``cuda`` without CUDA is a user error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def _split(domain: str, store: Store, data_dir: Path | None, split_seed: int):
    from ltrans.data import load_split

    return load_split(domain, data_dir=data_dir, seed=split_seed, store=store)


def _key(kind: str, name: str, spec, preset: str, split) -> Any:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    config = spec.config if preset == "full" else spec.tiny
    # Only domains whose model space is computed (audio) name its settings, so image keys stay as they were.
    computed = model_space_settings(spec.domain)
    return config, make_key(
        kind, name, format=FORMAT, preset=preset, config=dataclasses.asdict(config),
        seed=getattr(spec, "seed", 0), data=fingerprint(split.train.x, split.train.y, split.test.x, split.test.y),
        **({"model_space": computed} if computed else {}),
    )


def _train_into(directory: Path, spec, config, split, *, seed: int, device: str, progress: bool,
                header: dict[str, Any]) -> None:
    start = time.perf_counter()
    module, info = spec.train(config, split, seed=seed, device=device, progress=progress)
    seconds = time.perf_counter() - start
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, directory / "model.pt")
    record = {**header, "config": dataclasses.asdict(config), "info": info, "train_seconds": seconds,
              "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__}
    atomic_write_json(directory / "record.json", record)


def _load(directory: Path, spec, config, device: str) -> Trained:
    record = json.loads((directory / "record.json").read_text())
    module = spec.build(config)
    try:
        state = torch.load(directory / "model.pt", map_location=device, weights_only=True)
        module.load_state_dict(state)
    except (RuntimeError, ValueError, EOFError) as err:  # mismatched or unreadable weights
        raise UserError(f"checkpoint {directory / 'model.pt'} cannot be loaded ({err}); remove it with "
                        f"`ltrans cache clear --key {record.get('key', '')[:12]}` and train again") from None
    module.to(device).eval().requires_grad_(False)
    return Trained(module, record)


def base_model(name: str, *, store: Store | None = None, preset: str = "full", device: str = "cpu",
               progress: bool = False, data_dir: Path | None = None, split_seed: int = 0) -> Trained:
    """The frozen base model ``name``, trained now if the store does not hold it yet."""
    spec = BASE_MODELS[name]
    store = store or Store()
    split = _split(spec.domain, store, data_dir, split_seed)
    config, key = _key("base_model", name, spec, preset, split)
    header = {"name": name, "domain": spec.domain, "kind": spec.kind, "latent_dim": config.latent_dim,
              "seed": spec.seed, "preset": preset, "key": key.digest}
    path = store.get_or_create(key, lambda d: _train_into(d, spec, config, split, seed=spec.seed,
                                                          device=device, progress=progress, header=header))
    return _load(path, spec, config, device)


def classifier(domain: str, *, store: Store | None = None, preset: str = "full", device: str = "cpu",
               progress: bool = False, data_dir: Path | None = None, split_seed: int = 0) -> Trained:
    """The frozen data-space classifier of ``domain``, trained now if not stored yet."""
    spec = CLASSIFIERS[domain]
    store = store or Store()
    split = _split(domain, store, data_dir, split_seed)
    config, key = _key("classifier", domain, spec, preset, split)
    header = {"name": domain, "domain": domain, "kind": "classifier", "seed": 0, "preset": preset,
              "key": key.digest, "floor": spec.floor}
    path = store.get_or_create(key, lambda d: _train_into(d, spec, config, split, seed=0, device=device,
                                                          progress=progress, header=header))
    return _load(path, spec, config, device)


def is_trained(name: str, *, store: Store, preset: str = "full", kind: str = "base_model") -> dict | None:
    """The stored record of a base model (or classifier) if it is in the store, else None; a corrupted
    one raises CorruptArtifact (one line naming the fix) instead of a JSON error."""
    spec = BASE_MODELS[name] if kind == "base_model" else CLASSIFIERS[name]
    if not any(e.kind == kind and e.name == name for e in store.entries()):
        return None  # nothing stored under the name: no need to load (or synthesise) its data for the key
    split = _split(spec.domain if kind == "base_model" else name, store, None, 0)
    _, key = _key(kind, name, spec, preset, split)
    if not store.exists(key):
        return None
    return json.loads((store.open(key) / "record.json").read_text())
