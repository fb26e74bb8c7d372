"""cluster.yaml is a valid Ray cluster-launcher file: Ray's own schema, plus what our sweeps need."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]


def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster(), schema)  # raises with the offending key


def test_cluster_yaml_passes_rays_launcher_validation_after_defaults():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(cluster())  # what `ray up` does first: provider defaults filled in
    validate_config(config)
    assert config["available_node_types"]["head"]["max_workers"] == 0


def test_cluster_yaml_has_a_head_and_a_gpu_worker_that_install_this_package():
    config = cluster()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [name for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(types[name]["max_workers"] >= 1 for name in gpu)
    assert "." in config["file_mounts"].values()  # this checkout goes to every node
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "-e ~/ltrans" in setup and "torch==2.13.0" in setup
    assert os.path.isdir(ROOT / "sweeps")


def test_cluster_yaml_starts_every_ray_node_with_token_authentication_and_ships_the_token():
    config = cluster()
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ") for c in ray_starts), ray_starts
    assert "disabled" not in " ".join(starts)
    # Ray reads ~/.ray/auth_token when neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "--dashboard-host=127.0.0.1" in ray_starts[0]


def test_a_broken_cluster_yaml_is_caught_by_the_schema():
    import pytest
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    broken = cluster()
    broken["available_node_types"]["gpu_worker"]["resources"] = {"GPU": 0.5}  # Ray wants whole units
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
