from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ltrans.config import ConfigError, dotted_keys, override, parse_sets
from ltrans.errors import UserError
from ltrans.registry import Registry, UnknownName


@dataclass(frozen=True)
class Inner:
    beta_swd: float = 1.0
    shared_dim: int = 8
    balanced: bool = True
    widths: tuple = (512, 512)
    limit: int | None = None  # an optional setting: None means "no limit"

    def __post_init__(self) -> None:
        if self.shared_dim < 1:
            raise ValueError(f"shared_dim must be >= 1, got {self.shared_dim}")


@dataclass(frozen=True)
class Outer:
    bridge: Inner = field(default_factory=Inner)
    seed: int = 0
    pair: str = "mnist_mnist"


def test_override_replaces_nested_keys_and_leaves_the_original():
    cfg = Outer()
    new = override(cfg, {"bridge.beta_swd": 0.3, "seed": 7})
    assert new.bridge.beta_swd == 0.3 and new.seed == 7
    assert cfg.bridge.beta_swd == 1.0 and cfg.seed == 0          # frozen original untouched
    assert new.bridge.shared_dim == cfg.bridge.shared_dim


def test_override_coerces_strings_to_the_field_type():
    new = override(Outer(), parse_sets(["bridge.shared_dim=16", "bridge.balanced=false",
                                        "bridge.beta_swd=3", "bridge.widths=[64, 32]", "pair=x"]))
    assert new.bridge.shared_dim == 16 and isinstance(new.bridge.shared_dim, int)
    assert new.bridge.balanced is False
    assert new.bridge.beta_swd == 3.0 and isinstance(new.bridge.beta_swd, float)
    assert new.bridge.widths == (64, 32) and isinstance(new.bridge.widths, tuple)


def test_unknown_key_lists_every_valid_key():
    with pytest.raises(ConfigError) as err:
        override(Outer(), {"bridge.beta_sdw": 1.0})
    message = str(err.value)
    assert "'bridge.beta_sdw'" in message
    for key in dotted_keys(Outer()):
        assert key in message
    assert isinstance(err.value, UserError)


@pytest.mark.parametrize("key, value", [("bridge.shared_dim", "2.5"), ("bridge.balanced", "7"),
                                        ("seed", "abc"), ("bridge.beta_swd", "true")])
def test_wrong_type_is_refused(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        override(Outer(), {key: value})


@pytest.mark.parametrize("value", ["", "null", "~", None])
def test_a_missing_value_is_refused_where_the_setting_has_one(value):
    # None used to reach __post_init__ and fail there with a TypeError ('>' between NoneType and int).
    for key, needs in (("bridge.beta_swd", "a float, like 1.0"), ("bridge.shared_dim", "an int, like 8")):
        with pytest.raises(ConfigError) as err:
            override(Outer(), {key: value})
        assert str(err.value) == f"{key!r} needs a value ({needs})"


@pytest.mark.parametrize("value", ["", "null", None])
def test_an_optional_setting_still_takes_none(value):
    assert override(Outer(), {"bridge.limit": value}).bridge.limit is None
    assert override(Outer(), parse_sets(["bridge.limit=5"])).bridge.limit == 5


@pytest.mark.parametrize("text, number", [("1e-3", 1e-3), ("2E+1", 20.0), ("1.5e2", 150.0), ("-3e0", -3.0)])
def test_exponent_notation_sets_a_float_field(text, number):
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float setting takes it as the number it spells.
    new = override(Outer(), parse_sets([f"bridge.beta_swd={text}"]))
    assert new.bridge.beta_swd == number and isinstance(new.bridge.beta_swd, float)
    assert override(Outer(), {"bridge.beta_swd": text}).bridge.beta_swd == number  # a sweep's `fixed:`


@pytest.mark.parametrize("key, text", [("bridge.beta_swd", "nan"), ("bridge.beta_swd", "1e400"),
                                       ("bridge.beta_swd", "1e-3x"), ("bridge.shared_dim", "1e1"),
                                       ("bridge.beta_swd", "\uff11e1"), ("bridge.beta_swd", "08")])
def test_non_finite_or_non_numeric_text_and_exponents_for_ints_are_refused(key, text):
    with pytest.raises(ConfigError, match=f"takes an? (float|int) .*got '{text}'"):
        override(Outer(), {key: text})


def test_type_errors_use_the_right_article():
    with pytest.raises(ConfigError, match=r"^'bridge\.shared_dim' takes an int \(like 8\); got 2\.5$"):
        override(Outer(), {"bridge.shared_dim": "2.5"})
    with pytest.raises(ConfigError, match=r"^'bridge\.beta_swd' takes a float \(like 1\.0\); got True$"):
        override(Outer(), {"bridge.beta_swd": "true"})


def test_validation_runs_again_on_override():
    with pytest.raises(UserError, match="shared_dim must be >= 1"):
        override(Outer(), {"bridge.shared_dim": 0})


@pytest.mark.parametrize("item", ["novalue", "=3", ""])
def test_malformed_set_items_are_refused(item):
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets([item])


def test_registry_rejects_duplicates_and_suggests_close_names():
    reg: Registry[int] = Registry("widget")
    reg.register("mnist_vae", 1)

    @reg.register("animals_vae")
    def factory():
        return 2

    assert reg.names() == ["animals_vae", "mnist_vae"] and "mnist_vae" in reg and len(reg) == 2
    assert reg["animals_vae"] is factory
    with pytest.raises(ValueError, match="already registered"):
        reg.register("mnist_vae", 3)
    with pytest.raises(UnknownName) as err:
        reg["mnist_vea"]
    assert "Did you mean 'mnist_vae'" in str(err.value) and "animals_vae" in str(err.value)
    assert isinstance(err.value, KeyError) and isinstance(err.value, UserError)
