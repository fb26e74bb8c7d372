"""The spoken_digits domain: synthetic clips from eSpeak NG, and the Speech Commands / SC09 loaders."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ltrans.data import DATASETS, LoadRequest, spoken
from ltrans.data.audio import N_SAMPLES, SAMPLE_RATE, log_mel, resample, write_wav
from ltrans.data.spoken import CLASS_NAMES, make_spoken_digits, synthesize, trim_silence
from ltrans.errors import UserError


@pytest.fixture(scope="module")
def clips():
    return make_spoken_digits(6, seed=1)  # 60 clips


def test_clips_are_balanced_float_audio_in_range(clips):
    assert clips.x.shape == (60, N_SAMPLES) and clips.x.dtype == np.float32
    assert clips.y.dtype == np.int64 and np.bincount(clips.y).tolist() == [6] * 10
    assert np.abs(clips.x).max() <= 1.0
    np.testing.assert_array_equal(np.round(clips.x * 32767), clips.x * 32767)  # on the 16-bit grid


def test_same_seed_same_bytes_whatever_ran_before(clips):
    # Each clip takes its draws in order, so a smaller set is a prefix of a larger one, even though
    # other clips were synthesised in between (espeak state is reset per clip).
    again = make_spoken_digits(2, seed=1)
    assert again.x.tobytes() == clips.x[:20].tobytes() and np.array_equal(again.y, clips.y[:20])
    assert not np.array_equal(make_spoken_digits(2, seed=2).x, again.x)


def test_synthesis_is_deterministic_for_every_variant_family():
    for voice in ("en+m3", "en-us+f2", "en-GB-scotland+klatt", "en-029+klatt2"):
        first = synthesize("seven", voice, 150, 40, seed=5)
        synthesize("two", "en-GB-x-rp+f4", 200, 70, seed=9)
        assert np.array_equal(first, synthesize("seven", voice, 150, 40, seed=5)), voice


def test_clips_are_loud_words_in_a_quieter_window(clips):
    frames = clips.x.reshape(60, 100, 160)  # 10 ms frames
    rms = np.sqrt((frames**2).mean(axis=2))  # (60, 100)
    assert (np.sqrt((clips.x**2).mean(axis=1)) > 0.01).all()
    # The word is much louder than the noise floor (SNR >= 15 dB) and spans 0.15 .. 0.9 s.
    loud = rms > 10 ** (-15 / 20) * rms.max(axis=1, keepdims=True)
    assert (np.median(rms, axis=1) < 0.5 * rms.max(axis=1)).all()
    span = loud.shape[1] - loud[:, ::-1].argmax(axis=1) - loud.argmax(axis=1)
    assert span.min() >= 15 and span.max() <= 90, span


def test_slowest_words_fit_the_window_after_trimming():
    for word in CLASS_NAMES:
        raw = synthesize(word, "en-029+m7", spoken.RATE_WPM[0], spoken.PITCH[0], seed=0)
        trimmed = trim_silence(raw)
        assert 0.2 * SAMPLE_RATE < len(trimmed) < N_SAMPLES, word
        assert len(trimmed) < len(raw)  # espeak pads with silence, which is removed


def test_trim_silence_removes_exactly_the_quiet_ends():
    word = np.array([0.5, -1.0, 0.0, 0.3])
    padded = np.concatenate([np.full(5, 1e-4), word, np.zeros(7)])
    np.testing.assert_array_equal(trim_silence(padded), word)
    assert len(trim_silence(np.zeros(10))) == 0


def _word_features(x: np.ndarray) -> np.ndarray:
    """Log-mel of the loud span of each clip, stretched to 16 frames and pooled to 16 bands."""
    out = []
    for spec in log_mel(x):
        energy = spec.exp().sum(dim=0)
        loud = torch.nonzero(energy > 1e-2 * energy.max()).flatten()
        word = spec[None, :, loud[0] : loud[-1] + 1]
        word = torch.nn.functional.interpolate(word, size=16, mode="linear", align_corners=True)[0]
        out.append(word.reshape(16, 4, 16).mean(dim=1).flatten())
    f = torch.stack(out).numpy()
    return (f - f.mean(axis=1, keepdims=True)) / f.std(axis=1, keepdims=True)


def test_digits_are_separable_by_a_linear_model():
    from sklearn.linear_model import RidgeClassifier

    train, test = make_spoken_digits(30, seed=2), make_spoken_digits(10, seed=3)
    model = RidgeClassifier(alpha=10.0).fit(_word_features(train.x), train.y)
    assert model.score(_word_features(test.x), test.y) > 0.9  # measured 0.96 on voices/rates never seen


def test_embedded_loader_caches_then_splits_stratified(tmp_path, monkeypatch):
    from ltrans.artifacts import Store

    store = Store(tmp_path / "cache")  # its own: a 5-a-class dataset must not join the session's store
    monkeypatch.setattr(spoken, "DEFAULT_N_PER_CLASS", 5)
    expected = make_spoken_digits(5, spoken.SYNTH_SEED)
    load = DATASETS["spoken_digits"].load
    split = load(LoadRequest(data_dir=None, seed=0, store=store))
    monkeypatch.setattr(spoken, "make_spoken_digits", lambda *a: pytest.fail("cache miss"))
    cached = load(LoadRequest(data_dir=None, seed=0, store=store))
    assert cached.train.x.tobytes() == split.train.x.tobytes()
    assert np.bincount(split.test.y).tolist() == [1] * 10 and len(split.train) == 40
    # The cache is exact and keeps each label with its clip: every loaded clip is byte for byte one freshly
    # synthesised clip (all 50 differ), labelled as that clip was, and the split uses each clip once.
    made = {clip.tobytes(): i for i, clip in enumerate(expected.x)}
    assert len(made) == len(expected.x)
    rows = {}
    for name, part in {"train": split.train, "test": split.test, "cached train": cached.train,
                       "cached test": cached.test}.items():
        rows[name] = [made[clip.tobytes()] for clip in part.x]  # KeyError: a clip that was never made
        np.testing.assert_array_equal(part.y, expected.y[rows[name]], err_msg=name)
    assert sorted(rows["train"] + rows["test"]) == list(range(50))
    assert (rows["cached train"], rows["cached test"]) == (rows["train"], rows["test"])
    other = load(LoadRequest(data_dir=None, seed=1, store=store))  # same data, another split
    assert not np.array_equal(other.test.x, split.test.x)


def test_domain_is_registered():
    domain = DATASETS["spoken_digits"]
    assert domain.modality == "audio" and domain.sample_shape == (N_SAMPLES,)
    assert domain.class_names == CLASS_NAMES and domain.n_classes == 10


# ---------------------------------------------------------------- real-dataset folders


@pytest.fixture(scope="module")
def sources():
    return make_spoken_digits(3, seed=4)  # what the folder files contain


def _nearest(x: np.ndarray, sources) -> np.ndarray:
    """Index in sources of each loaded clip (content identifies the file)."""
    return np.array([int(np.abs(sources.x - clip).sum(axis=1).argmin()) for clip in x])


def _speech_commands(root: Path, sources) -> dict[str, int]:
    """Writes <root>/<word>/<i>.wav (every other file at 22050 Hz) plus folders to ignore."""
    files = {}
    for i, (clip, label) in enumerate(zip(sources.x, sources.y)):
        rel = f"{CLASS_NAMES[label]}/clip{i:02d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            write_wav(root / rel, resample(clip, SAMPLE_RATE, 22050), 22050)
        else:
            write_wav(root / rel, clip)
        files[rel] = i
    for extra in ("_background_noise_/white.wav", "yes/a.wav"):
        (root / extra).parent.mkdir(exist_ok=True)
        write_wav(root / extra, np.full(40000, 0.1))
    return files


def test_speech_commands_folders_give_labels_and_the_listed_test_split(tmp_path, sources):
    files = _speech_commands(tmp_path, sources)
    listed = sorted(files)[::3]
    (tmp_path / "testing_list.txt").write_text("\n".join(listed + ["yes/a.wav"]) + "\n")
    (tmp_path / "validation_list.txt").write_text(sorted(files)[1] + "\n")  # stays in train
    split = spoken.load_speech_commands(tmp_path, seed=0)
    assert len(split.train) + len(split.test) == len(files) == 30
    assert sorted(_nearest(split.test.x, sources)) == sorted(files[p] for p in listed)
    for part in (split.train, split.test):
        assert part.x.shape[1:] == (N_SAMPLES,) and part.x.dtype == np.float32
        np.testing.assert_array_equal(part.y, sources.y[_nearest(part.x, sources)])


def test_speech_commands_without_a_list_is_split_by_seed(tmp_path, sources):
    _speech_commands(tmp_path, sources)
    split = spoken.load_speech_commands(tmp_path, seed=0)
    assert np.bincount(split.test.y, minlength=10).tolist() == [1] * 10  # 20 % of 3, rounded, per class
    assert np.array_equal(spoken.load_speech_commands(tmp_path, seed=0).test.x, split.test.x)
    assert not np.array_equal(spoken.load_speech_commands(tmp_path, seed=1).test.x, split.test.x)


@pytest.mark.parametrize("layout", ["speech_commands", "sc09"])
def test_without_a_list_no_speaker_is_on_both_sides(tmp_path, layout):
    # Takes of one speaker are near duplicates: a per-clip split would score the test on voices it trained on.
    rng = np.random.default_rng(0)
    speakers = [f"{h:08x}" for h in rng.integers(0, 2**32, size=4)]
    names = {}
    for word in CLASS_NAMES:
        for s, speaker in enumerate(speakers[: 2 + CLASS_NAMES.index(word) % 3]):  # 2-4 speakers per word
            for take in range(3):
                rel = (f"{word}/{speaker}_nohash_{take}.wav" if layout == "speech_commands"
                       else f"train/{word.title()}_{speaker}_nohash_{take}.wav")
                (tmp_path / rel).parent.mkdir(exist_ok=True)
                clip = np.full(N_SAMPLES, 0.01 * (1 + len(names)))  # its amplitude names the file
                write_wav(tmp_path / rel, clip)
                names[round(float(clip[0]) * 100)] = (speaker, word)
    for seed in (0, 1, 2):
        split = spoken.load_speech_commands(tmp_path, seed=seed)
        sides = [{names[round(float(np.abs(x).max()) * 100)][0] for x in part.x} for part in (split.train, split.test)]
        assert not sides[0] & sides[1]
        for part in (split.train, split.test):
            assert np.bincount(part.y, minlength=10).min() >= 3  # every digit on both sides
        assert len(split.train) + len(split.test) == len(names)


def test_without_a_list_a_digit_of_one_speaker_is_a_user_error(tmp_path):
    for word in CLASS_NAMES:
        for speaker in ("aaaa0000", "bbbb1111")[: 1 if word == "seven" else 2]:
            (tmp_path / word).mkdir(exist_ok=True)
            write_wav(tmp_path / word / f"{speaker}_nohash_0.wav", np.full(N_SAMPLES, 0.1))
    with pytest.raises(UserError, match=r"testing_list\.txt"):
        spoken.load_speech_commands(tmp_path, seed=0)


def test_sc09_flat_layout(tmp_path, sources):
    part_of = {}
    for i, (clip, label) in enumerate(zip(sources.x, sources.y)):
        part = ("train", "valid", "test")[i % 3]
        (tmp_path / part).mkdir(exist_ok=True)
        write_wav(tmp_path / part / f"{CLASS_NAMES[label].title()}_spk{i}_0.wav", clip)
        part_of[i] = part
    write_wav(tmp_path / "train" / "Yes_spk0_0.wav", np.zeros(100))
    split = spoken.load_speech_commands(tmp_path, seed=0)
    assert sorted(_nearest(split.test.x, sources)) == [i for i, p in part_of.items() if p == "test"]
    assert len(split.train) == 20  # train + valid
    np.testing.assert_array_equal(split.train.y, sources.y[_nearest(split.train.x, sources)])


def test_longer_and_shorter_clips_are_fit_to_one_second(tmp_path):
    lengths = (12000, 20000, 16000, 16000, 16000)  # 5 per word, so that 20 % makes a test split
    for i, n in enumerate(lengths):
        for word in CLASS_NAMES:
            (tmp_path / word).mkdir(exist_ok=True)
            write_wav(tmp_path / word / f"{i}.wav", np.full(n, 0.25))
    split = spoken.load_speech_commands(tmp_path, seed=0)
    both = np.concatenate([split.train.x, split.test.x])
    assert both.shape == (50, N_SAMPLES)
    assert sorted((np.abs(both) > 0).sum(axis=1).tolist()) == [12000] * 10 + [N_SAMPLES] * 40


@pytest.mark.parametrize("layout", ["missing", "no_digits", "no_wavs"])
def test_unusable_folders_raise_a_user_error_naming_the_dir(tmp_path, layout):
    root = tmp_path / "speech"
    if layout != "missing":
        (root / "yes").mkdir(parents=True)
        write_wav(root / "yes" / "a.wav", np.zeros(100))
    if layout == "no_wavs":
        (root / "zero").mkdir()
        (root / "zero" / "a.txt").write_text("not audio")
    with pytest.raises(UserError, match=r"speech.*zero"):
        spoken.load_speech_commands(root, seed=0)
    with pytest.raises(UserError):
        DATASETS["spoken_digits"].load(LoadRequest(data_dir=root, seed=0, store=None))


def test_a_file_given_as_the_folder_is_called_a_file(tmp_path):
    path = tmp_path / "zero.wav"
    write_wav(path, np.zeros(100))
    with pytest.raises(UserError) as err:
        DATASETS["spoken_digits"].load(LoadRequest(data_dir=path, seed=0, store=None))
    assert str(err.value).startswith(f"{path}: a file, not a folder; expected Speech Commands folders")


def test_without_espeak_only_synthesis_fails_and_says_what_to_install(monkeypatch):
    # A machine without espeakng-loader (a GPU box running the image domains) still imports ltrans.data;
    # asking for a synthesised clip then names the package to install (fault injected: import fails).
    def missing(name):
        raise spoken.PackageNotFoundError(name)

    monkeypatch.setattr(spoken, "version", missing)
    assert spoken.espeak_version() == "not installed"
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(UserError, match="pip install espeakng-loader"):
        synthesize("three", "en-us", 150, 50, seed=0)
