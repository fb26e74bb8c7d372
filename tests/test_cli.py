"""The command line: exit codes, one-line user errors, listings and pictures."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import wave

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ltrans import __version__
from ltrans.cli import cli, os_error_line
from ltrans.cli_cache import human_size


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def ltrans_process(*args: str, env_cache) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "LTRANS_CACHE": str(env_cache)}
    return subprocess.run([sys.executable, "-m", "ltrans", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_version_and_help():
    assert run("--version").output.strip().endswith(__version__)
    result = run("--help")
    assert result.exit_code == 0
    for command in ("data", "cache", "demo"):
        assert command in result.output


def test_unknown_domain_is_one_line_exit_2_without_traceback(_session_cache):
    proc = ltrans_process("data", "show", "mnits", "-o", str(_session_cache / "x"), env_cache=_session_cache)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown dataset 'mnits'" in lines[0] and "Did you mean 'mnist'" in lines[0]


def test_missing_data_dir_names_the_dir_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(cli, ["data", "show", "mnist", "--data-dir", str(missing), "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert str(missing) in result.output and "embedded" in result.output


def test_data_ls_json_lists_every_domain_with_sizes():
    result = run("data", "ls", "-f", "json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) == {"mnist", "animals", "digits8", "spoken_digits"}
    assert (rows["mnist"]["train"], rows["mnist"]["test"]) == (4000, 1000)
    assert (rows["animals"]["train"], rows["animals"]["test"]) == (8000, 2000)
    assert rows["spoken_digits"]["modality"] == "audio" and rows["spoken_digits"]["classes"] == 10
    assert rows["animals"]["class_names"][0] == "bear"


def test_data_show_image_writes_a_grid_of_per_class_rows(tmp_path):
    result = run("data", "show", "digits8", "-o", str(tmp_path), "--per-class", "3")
    assert result.exit_code == 0
    image = Image.open(tmp_path / "digits8.png")
    assert image.size[1] >= 10 * 8 * 8            # 10 rows of 8x8 tiles scaled 8x
    assert len(set(np.asarray(image.convert("L")).ravel().tolist())) > 10


def test_data_show_audio_writes_wavs_and_a_spectrogram_grid(tmp_path):
    result = run("data", "show", "spoken_digits", "-o", str(tmp_path), "--per-class", "1")
    assert result.exit_code == 0
    wavs = sorted(tmp_path.glob("*.wav"))
    assert len(wavs) == 10 and (tmp_path / "spoken_digits_spectrograms.png").exists()
    with wave.open(str(wavs[0])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 16000)


def test_data_show_draws_a_blank_row_for_a_class_without_examples(tmp_path):
    # A real dataset folder may lack a class; the first one used to fix the tile size.
    from ltrans.cli_data import show_examples
    from ltrans.errors import UserError
    from ltrans.viz import tile_grid

    x = np.full((6, 8, 8), 0.0)  # black tiles
    y = np.array([1, 1, 2, 2, 3, 3])
    names = ["zero", "one", "two", "three"]
    (path,) = show_examples("image", x, y, names, 2, tmp_path, "partial")
    grey = np.asarray(Image.open(path).convert("L"))
    rows = np.array_split(grey[2:], 4)  # pad 2, then four rows of 8x8 tiles scaled 8x
    label_w = 8 + 7 * len("three")
    assert grey.shape == (2 + 4 * (64 + 2), label_w + 2 * (64 + 2) + 2)
    assert (rows[0][:, label_w:] == 255).all()  # class zero: blank
    assert all((r[:64, label_w + 2 : label_w + 66] == 0).all() for r in rows[1:])  # a black tile each
    with pytest.raises(UserError, match="all 2 rows of the grid are empty"):
        tile_grid([[], []])


def test_cache_ls_verify_and_clear(tmp_path, store):
    import shutil

    from ltrans.data import load_split

    load_split("spoken_digits", store=store)  # synthesised once per session, then copied
    cache = str(tmp_path / "cache")
    shutil.copytree(store.root / "dataset", tmp_path / "cache" / "dataset")
    listing = json.loads(run("--cache-dir", cache, "cache", "ls", "-f", "json").output)
    assert [e["name"] for e in listing] == ["spoken_digits"]
    assert run("--cache-dir", cache, "cache", "verify").exit_code == 0
    # Flip one byte of the cached clips: verify must report it and exit 1.
    target = next(p for p in (tmp_path / "cache").rglob("*.npz"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["--cache-dir", cache, "cache", "verify"])
    assert result.exit_code == 1 and "CORRUPT" in result.output and target.name in result.output
    # Reading the corrupted artifact is refused with exit 2 and the fix.
    result = CliRunner().invoke(cli, ["--cache-dir", cache, "data", "show", "spoken_digits", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "cache clear" in result.output
    assert run("--cache-dir", cache, "cache", "clear", "-y").exit_code == 0
    assert json.loads(run("--cache-dir", cache, "cache", "ls", "-f", "json").output) == []


@pytest.mark.parametrize("args, message", [
    (["data", "show", "mnist"], "Missing option"),
    (["data", "show", "mnist", "-o", "x", "--per-class", "0"], "--per-class"),
    (["cache", "clear", "--key", "ffffffffffff"], "no cached artifact"),
    (["data", "show", "digits8", "-o", "x", "--seed", "-1"], "--seed"),  # was a numpy traceback
    (["translate", "mnist_mnist", "--from", "a", "-o", "x", "--seed", str(2**64)], "--seed"),  # torch overflowed
    (["base", "sample", "mnist_vae", "-o", "x", "--seed", "-1"], "--seed"),
])
def test_bad_usage_exits_2(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output


def test_bridge_ablate_appends_one_row_per_variant_and_repeats_itself(tmp_path):
    # Two runs of the classifier study into one folder: each appends its two complete rows (nothing
    # overwritten), the same seed gives the same figures, and the trained readout ends with a lower class
    # loss than the authors' frozen random one from the same start.
    args = ["bridge", "ablate", "mnist_mnist", "--preset", "smoke", "--study", "classifier",
            "--set", "bridge.steps=100", "-o", str(tmp_path)]
    first, second = run(*args), run(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    for result in (first, second):
        assert "trained classifier" in result.stdout and "frozen classifier" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["trained classifier", "frozen classifier"] * 2
    assert rows[0]["config_hash"] != rows[1]["config_hash"]
    timing = {"train_seconds", "eval_seconds"}
    for a, b in zip(rows[:2], rows[2:]):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    trained, frozen = rows[0], rows[1]
    assert trained["status"] == frozen["status"] == "ok"
    assert trained["loss_cls"] < frozen["loss_cls"]


def test_bridge_ablate_repeats_a_chosen_variant_over_seeds_and_summarises_it(tmp_path):
    # --variant keeps one variant, --seeds 2 runs it with seeds 0 and 1 (two rows, different draws), and
    # the printed summary is the mean and sample std of those rows; an unknown variant is refused before
    # anything trains or is written.
    args = ["bridge", "ablate", "mnist_mnist", "--preset", "smoke", "--study", "classifier", "--variant",
            "trained classifier", "--seeds", "2", "--set", "bridge.steps=100", "-o", str(tmp_path)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [("trained classifier", 0, "ok"),
                                                                      ("trained classifier", 1, "ok")]
    assert rows[0]["config_hash"] != rows[1]["config_hash"] and rows[0]["loss_cls"] != rows[1]["loss_cls"]
    for key in ("transfer_a_to_b", "transfer_b_to_a"):
        a, b = rows[0][key], rows[1][key]
        assert f"{(a + b) / 2:.3f} +- {abs(a - b) / 2 ** 0.5:.3f}" in result.stdout
    bad = run(*args[:8], "no such variant", *args[9:])
    assert bad.exit_code == 2 and "unknown variant 'no such variant'" in bad.output
    assert "'trained classifier', 'frozen classifier'" in bad.output
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2


def test_an_output_path_under_a_regular_file_is_one_line_exit_2(tmp_path):
    # Tests run as root, so a path under a regular file stands in for every unwritable -o.
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "out"
    result = CliRunner().invoke(cli, ["data", "show", "digits8", "-o", str(target)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {target.parent}: is a file, not a folder") and "writable -o" in lines[0]


def test_bridge_train_checks_its_output_folder_before_it_prepares_or_trains(tmp_path):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "bridge"
    result = CliRunner().invoke(cli, ["bridge", "train", "mnist_mnist", "--preset", "smoke", "-o", str(target)])
    assert result.exit_code == 2 and f"error: {target.parent}: is a file, not a folder" in result.output, result.output
    assert "preparing pair" not in result.output and "training" not in result.output  # failed before any work
    ablate = CliRunner().invoke(cli, ["bridge", "ablate", "mnist_mnist", "--preset", "smoke", "-o", str(target)])
    assert ablate.exit_code == 2 and f"error: {target.parent}: is a file, not a folder" in ablate.output, ablate.output


@pytest.mark.parametrize("sets, words", [
    (["bridge.lr="], "error: 'bridge.lr' needs a value (a float, like 0.001)"),  # was a TypeError traceback
    (["bridge.lr=null"], "error: 'bridge.lr' needs a value (a float, like 0.001)"),
    (["bridge.steps=1.5"], "error: 'bridge.steps' takes an int (like 200); got 1.5"),
    (["bridge.n_classes=5"], "bridge.n_classes must be 10"),  # was an IndexError after preparing the pair
    (["method=procrustes", "procrustes=foo"], "procrustes must be one of ('orthogonal', 'lstsq')"),  # was exit 0
    (["seed=99999999999999999999"], "seed must be between 0 and 4294967295"),  # was an overflow traceback
    (["seed=-1"], "seed must be between 0 and 4294967295"),
])
def test_bridge_train_refuses_a_bad_setting_in_one_line_before_any_work(tmp_path, sets, words):
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["--cache-dir", str(cache), "bridge", "train", "mnist_mnist", "--preset", "smoke", "-o", str(out)]
    result = run(*args, *(a for item in sets for a in ("--set", item)))
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert words in lines[0]
    assert not cache.exists() and not out.exists()  # no base model prepared, no run folder begun


def test_bridge_ablate_refuses_seeds_past_the_largest_before_any_work(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    result = run("--cache-dir", str(cache), "bridge", "ablate", "mnist_mnist", "--preset", "smoke", "--study",
                 "classifier", "--set", "seed=4294967294", "--seeds", "3", "-o", str(out))
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0] == ("error: --seeds 3 from seed 4294967294 goes past the largest seed, 4294967295; "
                        "use a lower --set seed or fewer --seeds")
    assert not cache.exists() and not out.exists()


def test_set_takes_a_float_in_exponent_notation():
    from ltrans.cli_bridge import trial_config

    cfg = trial_config("mnist_mnist", "smoke", ("bridge.lr=1e-3", "bridge.beta_swd=2E+0"))
    assert (cfg.bridge.lr, cfg.bridge.beta_swd) == (0.001, 2.0)


def test_data_show_refuses_a_file_as_data_dir_and_empty_idx_files_naming_them(tmp_path):
    from ltrans.data.idx import write_idx

    (tmp_path / "file").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    for stem, shape in (("train-images-idx3", (0, 28, 28)), ("train-labels-idx1", (0,)),
                        ("t10k-images-idx3", (0, 28, 28)), ("t10k-labels-idx1", (0,))):
        write_idx(empty / f"{stem}-ubyte", np.zeros(shape, np.uint8))
    for folder, words in ((tmp_path / "file", "is a file, not a folder"),
                          (empty, f"{empty / 'train-images-idx3-ubyte'} holds 0 images")):
        out = tmp_path / "out"
        result = run("data", "show", "mnist", "--data-dir", str(folder), "-o", str(out))
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.output
        assert "omit --data-dir" in lines[0] and not out.exists()


def test_os_error_line_names_the_paths_and_the_fix():
    full = OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises: no path
    assert os_error_line(full) == "No space left on device (free some space, or choose another -o / --cache-dir)"
    renamed = PermissionError(errno.EACCES, "Permission denied", "/a/.x.tmp", None, "/a/x")
    assert os_error_line(renamed).startswith("/a/.x.tmp -> /a/x: Permission denied (check that path")


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                    (5 * 2**30, "5.0 GiB"), (2**50, "1024.0 TiB")])
def test_human_size(n, text):
    assert human_size(n) == text


def test_demo_lists_domains_draws_each_and_writes_one_ok_trial(tmp_path, monkeypatch):
    # `ltrans demo` at smoke size: its preset is replaced by the smoke one (tiny base models, 200 bridge
    # steps: the real demo trains full base models and 1,500 steps, minutes) and the synthetic spoken
    # digits are made 5 a class; everything else is the command as shipped.
    import dataclasses
    import math

    from ltrans.data import DATASETS, spoken
    from ltrans.presets import PRESETS, smoke

    monkeypatch.setitem(PRESETS._entries, "demo", smoke)
    monkeypatch.setattr(spoken, "DEFAULT_N_PER_CLASS", 5)
    result = run("demo", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in DATASETS.names():  # the listing, then a grid of each domain
        assert name in result.stdout
        grid = f"{name}_spectrograms.png" if DATASETS[name].modality == "audio" else f"{name}.png"
        assert (tmp_path / "data" / grid).is_file(), name
    assert len(list((tmp_path / "data").glob("spoken_digits_*.wav"))) == 10 * 4  # 8 a class asked, 4 train
    trial = tmp_path / "trial"
    assert json.loads((trial / "config.json").read_text()) == dataclasses.asdict(smoke("mnist_mnist"))
    row = json.loads((trial / "row.json").read_text())
    assert row["status"] == "ok" and row["pair"] == "mnist_mnist" and (trial / "bridge.pt").is_file()
    for key in ("transfer_a_to_b", "transfer_b_to_a"):
        # finite accuracies only: at this size they are not robustly above chance (0.35 / 0.41 when the tiny
        # models train on two threads, 0.125 / 0.175 on one)
        assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0
    printed = json.loads(result.stdout[result.stdout.index("{\n"): result.stdout.rindex("}") + 1])  # indent=2
    assert "confusion_a_to_b" in row  # printed: the row without its confusion matrices
    assert printed == {k: v for k, v in row.items() if not k.startswith("confusion_")}
