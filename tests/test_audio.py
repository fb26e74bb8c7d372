"""Properties of the audio representation: mel filters, log-mel, model space, Griffin-Lim, WAV I/O."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest
import torch

from ltrans.data import audio
from ltrans.data.audio import N_SAMPLES, SAMPLE_RATE, SPEC_SHAPE
from ltrans.errors import UserError


def tone(freq: float, n: int = N_SAMPLES, rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from ltrans.data.spoken import make_spoken_digits

    return make_spoken_digits(1, seed=0).x  # one real synthetic clip per digit, (10, 16000)


def test_filterbank_is_triangles_with_peak_one_that_tile_the_axis():
    fb = audio.mel_filterbank(1024, 64, SAMPLE_RATE, 20.0, 8000.0).numpy()  # (513, 64)
    assert fb.shape == (513, 64)
    assert (fb >= 0).all() and (fb.max(axis=0) > 0).all()  # no empty band
    peaks = fb.argmax(axis=0)
    assert (np.diff(peaks) >= 0).all() and np.all(np.diff(audio.mel_band_centres()) > 0)
    # Adjacent HTK triangles share edges, so between the first and last centres they sum to exactly 1.
    freqs = np.linspace(0, SAMPLE_RATE / 2, 513)
    centres = audio.mel_band_centres()
    inner = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(fb[inner].sum(axis=1), 1.0, atol=1e-5)
    # On a fine frequency grid every triangle reaches its peak of 1.
    fine = audio.mel_filterbank(1 << 16, 64, SAMPLE_RATE, 20.0, 8000.0).numpy()
    np.testing.assert_allclose(fine.max(axis=0), 1.0, atol=0.02)


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 6000.0])
def test_a_tone_lands_in_the_band_nearest_its_frequency(freq):
    spec = audio.log_mel(tone(freq)[None])
    assert spec.shape == (1, *SPEC_SHAPE)
    band = int(spec[0].mean(dim=1).argmax())
    assert band == int(np.abs(audio.mel_band_centres() - freq).argmin())


def test_log_mel_rejects_other_lengths():
    with pytest.raises(ValueError, match="16000"):
        audio.log_mel(torch.zeros(2, 8000))


def test_model_space_is_a_fixed_invertible_map_inside_the_clamp(digits):
    spec = audio.to_model_space(digits)
    assert spec.shape == (10, *SPEC_SHAPE) and spec.min() >= 0 and spec.max() <= 1
    assert 0.0 < float(spec.mean()) < 1.0  # the fixed range is neither saturated nor empty here
    clamped = audio.log_mel(digits).clamp(audio.LOG_FLOOR, audio.LOG_CEIL)
    torch.testing.assert_close(audio.from_model_space(spec), clamped, atol=1e-5, rtol=0)
    # Fixed constants, not batch statistics: one clip maps the same alone as in a batch.
    torch.testing.assert_close(audio.to_model_space(digits[3:4]), spec[3:4])


def test_griffin_lim_round_trip_recovers_the_spectrogram(digits):
    target = audio.log_mel(digits[[0, 6, 7]])  # "zero", "six", "seven": voiced, fricative, both
    rebuilt = audio.griffin_lim(target, n_iter=32, generator=torch.Generator().manual_seed(0))
    assert rebuilt.shape == (3, N_SAMPLES)
    error = (audio.log_mel(rebuilt) - target).abs().mean().item()
    few = audio.log_mel(audio.griffin_lim(target, n_iter=2, generator=torch.Generator().manual_seed(0)))
    # Measured on all ten digits: 0.20 / 0.19 / 0.187 nats (about 0.8 dB) after 16 / 32 / 64 iterations.
    assert error < 0.3
    assert error < (few - target).abs().mean().item()  # iterating helps
    again = audio.griffin_lim(target, n_iter=32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rebuilt, again)


def test_wav_round_trip_is_exact_to_half_a_step(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, 1234).astype(np.float32)
    x[:2] = [-1.0, 1.0]
    audio.write_wav(tmp_path / "a.wav", x, 22050)
    y, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 22050 and y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() <= 0.5 / 32767 + 1e-7
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp file left behind


def _write_raw(path, frames: bytes, channels: int, width: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(frames)


def test_stereo_is_averaged(tmp_path):
    left, right = np.array([1000, -2000, 300], "<i2"), np.array([3000, 2000, -300], "<i2")
    _write_raw(tmp_path / "s.wav", np.stack([left, right], axis=1).tobytes(), channels=2, width=2)
    y, _ = audio.read_wav(tmp_path / "s.wav")
    np.testing.assert_allclose(y, np.array([2000, 0, 0]) / 32767, atol=1e-7)


def _float_wav(path) -> None:
    data = np.zeros(10, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, SAMPLE_RATE, SAMPLE_RATE * 4, 4, 32)  # format 3: IEEE float
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize("kind", ["8bit", "float", "garbage"])
def test_other_wav_formats_raise_a_user_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "8bit":
        _write_raw(path, bytes(range(100)), channels=1, width=1)
    elif kind == "float":
        _float_wav(path)
    else:
        path.write_bytes(b"not a wav")
    with pytest.raises(UserError, match=kind):
        audio.read_wav(path)


def _damaged(path, kind: str) -> None:
    """A WAV file (or folder) at path, damaged the way ``kind`` says."""
    audio.write_wav(path, tone(440.0, n=1000))
    data = path.read_bytes()
    if kind == "truncated_odd":  # cut mid-sample: numpy cannot even view the bytes as 16-bit
        path.write_bytes(data[:501])
    elif kind == "truncated_even":
        path.write_bytes(data[:490])
    elif kind == "header_only":
        path.write_bytes(data[:30])  # ends inside the fmt chunk: the wave module's EOFError has no message
    elif kind == "rate0":
        path.write_bytes(data[:24] + struct.pack("<I", 0) + data[28:])  # the fmt chunk's sample rate
    elif kind == "folder":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize(("kind", "words"), [
    ("truncated_odd", "truncated: the header promises 1000 frames, the file holds 228"),
    ("truncated_even", "truncated: the header promises 1000 frames, the file holds 223"),
    ("header_only", "too short for a WAV header"),
    ("rate0", "sample rate of 0 Hz"),
    ("folder", "a folder named like a WAV file"),
])
def test_a_damaged_wav_is_a_user_error_naming_the_file_and_the_problem(tmp_path, kind, words):
    path = tmp_path / "x.wav"
    _damaged(path, kind)
    with pytest.raises(UserError) as error:
        audio.read_wav(path)
    assert str(error.value).startswith(f"{path}: ") and words in str(error.value)


def test_the_wav_folder_loader_names_a_damaged_clip(tmp_path):
    from ltrans.data.spoken import load_speech_commands

    (tmp_path / "zero").mkdir()
    audio.write_wav(tmp_path / "zero" / "a.wav", tone(440.0))
    _damaged(tmp_path / "zero" / "b.wav", "truncated_odd")
    with pytest.raises(UserError, match=f"{tmp_path / 'zero' / 'b.wav'}: truncated"):
        load_speech_commands(tmp_path, seed=0)


@pytest.mark.parametrize(("sr_from", "sr_to"), [(22050, 16000), (8000, 16000), (48000, 16000)])
def test_resample_keeps_duration_and_pitch(sr_from, sr_to):
    x = tone(440.0, n=sr_from, rate=sr_from)  # 1 s
    y = audio.resample(x, sr_from, sr_to)
    assert y.dtype == np.float32 and len(y) == sr_to
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.fft.rfftfreq(len(y), 1 / sr_to)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)


def test_fit_length_centre_crops_and_pads():
    x = np.arange(10)
    np.testing.assert_array_equal(audio.fit_length(x, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(audio.fit_length(x[:3], 7), [0, 0, 0, 1, 2, 0, 0])
    assert audio.fit_length(np.ones(20000)).shape == (N_SAMPLES,)
