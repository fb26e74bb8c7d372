"""Ray token authentication, on real Ray processes: the local Ray a sweep starts answers only to its own
token (which no file holds), and joining a token cluster without the token is one clear error."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from test_sweep_run import CLI, tiny_sweep

ROOT = Path(__file__).resolve().parents[1]
# A local Ray as `ltrans sweep run` starts one (init_ray(None), after ray is imported); prints its GCS
# address and the token it chose, then waits for stdin to close.
LOCAL = """
import os, sys
import ray
from ltrans.sweep.runner import init_ray
assert init_ray(None)
assert ray.get(ray.remote(lambda: os.environ.get("RAY_AUTH_MODE")).remote()) == "token"
print(ray.get_runtime_context().gcs_address, os.environ["RAY_AUTH_TOKEN"], flush=True)
sys.stdin.read()
ray.shutdown()
"""
# A head node as cluster.yaml starts one (RAY_AUTH_MODE=token, the token from the environment here),
# on the machine's routable address.
HEAD = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""
# A client; "loopback" joins a local Ray bound to 127.0.0.1 the way init_ray binds it.
JOIN = """
import os, sys
if sys.argv[2] == "loopback":
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
import ray
from ray._private import ray_constants
if sys.argv[2] == "loopback":
    ray_constants.ENABLE_RAY_CLUSTER = False
try:
    ray.init(address=sys.argv[1])
except ConnectionError:
    print("refused")
else:
    print("joined", int(ray.cluster_resources()["CPU"]))
"""


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """os.environ without any Ray authentication setting, HOME (and so ~/.ray) in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    return env | {"HOME": str(home), "LTRANS_RAY_CPUS": "1"} | extra


def start(script: str, env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    return proc, proc.stdout.readline().split()


def test_rays_answer_only_to_their_token_and_joining_without_it_is_one_clear_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cluster_token = secrets.token_hex(32)
    head, printed = start(HEAD, clean_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster_token))
    servers = [head]
    try:
        (head_address,) = printed
        # RAY_ADDRESS would make a plain ray.init() join the head: a sweep without --address starts its own.
        local, printed = start(LOCAL, clean_env(home, RAY_ADDRESS=head_address))
        servers.append(local)
        local_address, local_token = printed
        assert local_address.startswith("127.0.0.1:") and local_address != head_address
        assert len(local_token) == 64 and local_token != cluster_token
        sweep = [sys.executable, "-c", CLI, "sweep", "run", str(tiny_sweep(tmp_path)), "--address", head_address, "-o"]
        # name: (JOIN, its address, its mode, RAY_AUTH_* of its environment) or (None, ...) for the sweep CLI;
        # a refusal takes Ray ~20 s of retries: all run side by side.
        cases = {
            "local, no auth": (JOIN, local_address, "loopback", {"RAY_AUTH_MODE": "disabled"}),
            "local, its token": (JOIN, local_address, "loopback", {"RAY_AUTH_MODE": "token",
                                                                   "RAY_AUTH_TOKEN": local_token}),
            "head, wrong token": (JOIN, head_address, "plain", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": local_token}),
            "head, its token": (JOIN, head_address, "plain", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster_token}),
            "sweep, no auth": (None, {"RAY_AUTH_MODE": "disabled"}),
            "sweep, no token": (None, {"RAY_AUTH_MODE": "token"}),
        }
        procs = {}
        for name, (*argv, auth) in cases.items():
            run_dir = tmp_path / name.replace(", ", "-").replace(" ", "-")
            command = [*sweep, str(run_dir)] if argv == [None] else [sys.executable, "-c", *argv]
            procs[name] = subprocess.Popen(command, env=clean_env(home, **auth), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
        out = {name: proc.communicate(timeout=240) + (proc.returncode,) for name, proc in procs.items()}
    finally:
        for server in servers:
            server.stdin.close()
            server.wait(timeout=60)
    assert out["local, its token"][0].strip() == "joined 1" and out["head, its token"][0].strip() == "joined 1"
    assert out["local, no auth"][0].strip() == "refused" and out["head, wrong token"][0].strip() == "refused"
    for name in ("sweep, no auth", "sweep, no token"):
        _, err, code = out[name]
        err = "\n".join(line for line in err.splitlines() if "gcs_client.cc" not in line) + "\n"  # Ray's C++ retries
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"--address {head_address}" in err and "RAY_AUTH_MODE=token" in err and "ray get-auth-token" in err
    assert "no token was found" in out["sweep, no token"][1]
    assert not any(tmp_path.glob("sweep*"))  # nothing half-made: the same command works once the token is there
    assert not (home / ".ray").exists()  # the local Ray's token lived in its processes' environment only


def test_local_auth_keeps_what_the_user_set():
    from ltrans.sweep.runner import local_auth

    env: dict[str, str] = {}
    other: dict[str, str] = {}
    assert local_auth(env) and local_auth(other)
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 64
    assert env["RAY_AUTH_TOKEN"] != other["RAY_AUTH_TOKEN"]  # a fresh token for every process
    for given in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}):
        env = dict(given)
        assert not local_auth(env) and env == given
    env = {"RAY_AUTH_TOKEN_PATH": "/t"}
    assert local_auth(env)
    assert env == {"RAY_AUTH_TOKEN_PATH": "/t", "RAY_AUTH_MODE": "token"}  # the user's token file is used
