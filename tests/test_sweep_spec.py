"""Sweep files: the shipped ones load, every kind of mistake is one clear error (file, key, choices)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ltrans.errors import UserError
from ltrans.sweep.spec import SMOKE_BUDGET, Dimension, load_spec, parse_spec, transfer_mean
from ltrans.sweep.trials import base_config, config_from_flat, content_key, flat_config, max_steps, resolve

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def good() -> dict:
    """A minimal valid sweep document."""
    return {"name": "t", "preset": "smoke", "pairs": ["mnist_mnist"], "budget": 3,
            "objectives": [{"name": "transfer_mean", "direction": "maximize"}],
            "space": {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweeps_load_and_round_trip(path):
    for smoke in (False, True):
        spec = load_spec(path, smoke=smoke)
        again = parse_spec(yaml.safe_load(yaml.safe_dump(spec.to_dict())), where="resolved")
        assert again == spec
    smoke = load_spec(path, smoke=True)
    assert smoke.preset == "smoke" and smoke.resources.gpus == 0 and 1 <= smoke.budget <= SMOKE_BUDGET
    assert {p.name for p in SWEEPS} >= {"demo.yaml", "paper.yaml", "search.yaml"}


def test_paper_grid_budget_is_the_whole_factorial():
    spec = load_spec(ROOT / "sweeps" / "paper.yaml")
    sizes = [len(d.grid_values()) for d in spec.space]
    assert spec.budget == len(spec.pairs) * len(spec.seeds) * int(__import__("math").prod(sizes))


BAD = [  # (change to the good document, words the message must contain)
    ({"colour": "red"}, ["colour", "unknown key", "budget", "space"]),
    ({"pairs": ["mnist_mnits"]}, ["pairs[0]", "mnist_mnits", "mnist_animals", "mnist_mnist"]),
    ({"base": "huge"}, ["base", "huge", "full", "tiny"]),
    ({"preset": "fast"}, ["preset", "paper", "demo", "smoke"]),
    ({"budget": -3}, ["budget", ">= 1", "-3"]),
    ({"sampler": "bayes"}, ["sampler", "tpe", "random", "grid", "cmaes", "nsga2"]),
    ({"space": {"bridge.beta_swdd": {"type": "float", "low": 0, "high": 1}}},
     ["space.bridge.beta_swdd", "unknown key", "bridge.beta_swd", "bridge.lr"]),
    ({"space": {"bridge.lr": {"type": "normal", "low": 0, "high": 1}}},
     ["space.bridge.lr.type", "normal", "float", "int", "categorical"]),
    ({"space": {"bridge.lr": {"type": "float", "low": 1.0, "high": 0.1}}}, ["space.bridge.lr", "low < high"]),
    ({"space": {"bridge.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
     ["space.bridge.lr.low", "log", "> 0"]),
    ({"space": {"bridge.lr": {"type": "float", "low": 0.1, "high": 1.0, "sigma": 2}}},
     ["space.bridge.lr.sigma", "unknown key", "low", "high", "log", "step", "choices"]),
    ({"space": {"bridge.shared_dim": {"type": "int", "low": 0, "high": 8}}},
     ["space.bridge.shared_dim", "shared_dim must be an integer >= 1"]),
    ({"space": {"bridge.width": {"type": "categorical", "choices": []}}}, ["space.bridge.width", "choices"]),
    ({"fixed": {"bridge.beta_kl": -1.0}}, ["fixed", "beta_kl"]),
    ({"objectives": [{"name": "accuracy"}]}, ["objectives[0].name", "accuracy", "transfer_mean", "transfer_a_to_b"]),
    ({"objectives": [{"name": "transfer_mean", "direction": "up"}]}, ["direction", "maximize", "minimize"]),
    ({"sampler": "cmaes", "objectives": [{"name": "transfer_a_to_b"}, {"name": "fid_a_to_b", "direction": "minimize"}]},
     ["sampler", "cmaes", "nsga2"]),
    ({"sampler": "grid"}, ["space.bridge.beta_swd", "grid", "choices", "step"]),
    ({"scheduler": {"type": "hyperband", "grace_period": 10}}, ["scheduler.type", "asha", "none"]),
    ({"scheduler": {"type": "asha", "grace_period": 10_000}}, ["scheduler.grace_period", "beyond", "200"]),
    ({"scheduler": {"type": "asha", "grace_period": 50, "metric": "transfer_mean"}},
     ["scheduler.metric", "loss_recon", "loss_total"]),
    ({"resources": {"cpus": 1, "tpus": 1}}, ["resources.tpus", "cpus", "gpus"]),
    ({"seeds": [0, -1]}, ["seeds[1]", ">= 0"]),
    ({"seeds": [0, 1, 0]}, ["seeds", "0", "twice"]),
    ({"pairs": ["mnist_mnist", "mnist_mnist"]}, ["pairs", "mnist_mnist", "twice"]),
    ({"space": {"bridge.width": {"type": "float", "low": 64, "high": 512}}},
     ["space.bridge.width", "int", "type: int"]),
    ({"space": {"bridge.freeze_classifier": {"type": "int", "low": 0, "high": 1}}},
     ["space.bridge.freeze_classifier", "bool", "type: categorical"]),
    ({"space": {"procrustes": {"type": "float", "low": 0, "high": 1}}},
     ["space.procrustes", "str", "type: categorical"]),
    ({"sampler": "grid", "budget": None, "space": {"bridge.n_layers": {"type": "int", "low": 1, "high": 10, "step": 6}}},
     ["space.bridge.n_layers.step", "6", "9", "high: 7"]),
    ({"space": {"bridge.lr": {"type": "float", "low": 0.001, "high": 0.002, "step": 0.3}}},
     ["space.bridge.lr.step", "0.3", "larger than"]),
    ({"sampler_seed": -1}, ["sampler_seed", ">= 0"]),
    ({"sampler_seed": 2**33}, ["sampler_seed", "2147483647"]),
    ({"sampler_seed": 1.5}, ["sampler_seed", "integer"]),
    ({"fixed": {"bridge.beta_swd": 1.0}}, ["fixed.bridge.beta_swd", "space", "both"]),
    ({"smoke": "no"}, ["smoke", "true or false", "no"]),
    ({"seeds": [0, 2**32]}, ["seeds[1]", "<= 4294967295"]),
    ({"fixed": {"bridge.n_classes": 5}}, ["fixed", "bridge.n_classes must be 10"]),
    ({"space": {"bridge.n_classes": {"type": "categorical", "choices": [10, 2]}}},
     ["space.bridge.n_classes", "bridge.n_classes must be 10"]),
    ({"fixed": {"procrustes": "foo"}}, ["fixed", "procrustes", "'orthogonal', 'lstsq'", "'foo'"]),
    ({"fixed": {"bridge.lr": None}}, ["fixed", "'bridge.lr' needs a value (a float, like 0.001)"]),
]


@pytest.mark.parametrize("change, words", BAD, ids=[str(next(iter(c))) + str(i) for i, (c, _) in enumerate(BAD)])
def test_each_mistake_is_one_error_naming_file_key_and_choices(tmp_path, change, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(good() | change))
    with pytest.raises(UserError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("text, problem", [("", "the file is empty"), ("# only a comment\n", "the file is empty"),
                                           ("- name: t\n", "the file holds a list"),
                                           ("demo\n", "the file holds only 'demo'")])
def test_a_file_that_is_not_a_mapping_says_what_it_holds(tmp_path, text, problem):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}; a sweep file is a mapping with keys name, pairs")
    assert ": :" not in message and "None" not in message


def test_fixed_takes_a_float_in_exponent_notation(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string; `space:` bounds took it already, `fixed:` now does too.
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(good()) + "fixed:\n  bridge.lr: 1e-3\n")
    cfg = resolve(load_spec(path), {"bridge.beta_swd": 1.0}, "mnist_mnist", 0)
    assert cfg.bridge.lr == 0.001 and isinstance(cfg.bridge.lr, float)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="broken.yaml: not valid YAML"):
        load_spec(tmp_path / "broken.yaml")


def test_unreadable_file_is_one_error(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfebad")
    with pytest.raises(UserError, match=r"bin.yaml: .*UTF-8") as info:
        load_spec(binary)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="cannot read sweep file"):
        load_spec(tmp_path)  # a folder


def test_grid_values_end_at_high_without_float_drift(tmp_path):
    space = {"bridge.beta_swd": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
             "bridge.beta_kl": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.2},  # 0.3 - 0.1 < 0.2
             "bridge.n_layers": {"type": "int", "low": 1, "high": 13, "step": 6}}
    spec = parse_spec(good() | {"sampler": "grid", "budget": None, "space": space})
    values = {d.key: d.grid_values() for d in spec.space}
    assert values["bridge.beta_swd"] == (0.1, 0.2, 0.3)  # not 0.30000000000000004
    assert values["bridge.n_layers"] == (1, 7, 13) and values["bridge.beta_kl"] == (0.1, 0.3)
    assert spec.budget == 3 * 2 * 3
    assert Dimension("x", "float", -0.3, 0.3, step=0.1).grid_values() == (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)


def test_an_int_dimension_may_search_a_float_field():
    spec = parse_spec(good() | {"space": {"bridge.beta_swd": {"type": "int", "low": 1, "high": 3}}})
    cfg = resolve(spec, {"bridge.beta_swd": 2}, "mnist_mnist", 0)
    assert cfg.bridge.beta_swd == 2.0 and isinstance(cfg.bridge.beta_swd, float)


@pytest.mark.parametrize("steps", [{"type": "categorical", "choices": [300, 600]},
                                   {"type": "int", "low": 300, "high": 600, "step": 100}])
def test_searched_steps_with_a_scheduler_bound_grace_and_max_t(steps):
    doc = good() | {"space": {"bridge.steps": steps}}
    spec = parse_spec(doc | {"scheduler": {"type": "asha", "grace_period": 500}})
    assert max_steps(spec) == 600  # above the smoke preset's 200: the searched steps count
    with pytest.raises(UserError, match="scheduler.grace_period: 700 is beyond the trials' 600 bridge steps"):
        parse_spec(doc | {"scheduler": {"type": "asha", "grace_period": 700}})


def test_cli_reports_a_bad_sweep_in_one_line_exit_2_and_starts_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(good() | {"pairs": ["mnist_mnits"]}))
    out = tmp_path / "run"
    code = "import ltrans.cli_sweep; from ltrans.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "sweep", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "mnist_mnits" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and "ray" not in proc.stdout.lower()


@pytest.mark.parametrize("change, words", BAD, ids=[str(next(iter(c))) + str(i) for i, (c, _) in enumerate(BAD)])
def test_cli_turns_each_mistake_into_exit_2_and_no_run_folder(tmp_path, change, words):
    from click.testing import CliRunner

    from ltrans.cli import cli

    path, out = tmp_path / "bad.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(good() | change))
    result = CliRunner().invoke(cli, ["sweep", "run", str(path), "--out", str(out)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1
    assert words[0] in result.output and not out.exists()


def test_resolve_fixes_pair_seed_and_overrides_and_round_trips(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(good() | {"fixed": {"bridge.steps": 120}, "seeds": [3, 4]}))
    spec = load_spec(path)
    cfg = resolve(spec, {"bridge.beta_swd": 2.5}, "mnist_mnist", 4)
    assert (cfg.pair, cfg.seed, cfg.bridge.beta_swd, cfg.bridge.steps) == ("mnist_mnist", 4, 2.5, 120)
    assert cfg.bridge.width == base_config(spec, "mnist_mnist").bridge.width  # untouched: the preset's
    assert config_from_flat(flat_config(cfg)) == cfg
    other = resolve(spec, {"bridge.beta_swd": 2.5}, "mnist_mnist", 3)
    assert content_key(cfg, "v1") == content_key(resolve(spec, {"bridge.beta_swd": 2.5}, "mnist_mnist", 4), "v1")
    assert len({content_key(cfg, "v1"), content_key(other, "v1"), content_key(cfg, "v2")}) == 3


def test_transfer_mean_is_the_mean_of_both_directions():
    assert transfer_mean({"transfer_a_to_b": 0.9, "transfer_b_to_a": 0.7}) == pytest.approx(0.8)
