"""Configuration: layered defaults, typed overrides, one-line errors, stable keys."""

import pytest

from benchmark.config import RunConfig, from_dict, resolve
from benchmark.config.values import coerce, parse_overrides
from benchmark.errors import ConfigError, UnknownNameError


def test_profile_dataset_and_method_layers_apply_in_order():
    quick = resolve("weight_decay", "cmnist")
    paper = resolve("weight_decay", "cmnist", profile="paper")
    assert (quick.train.epochs, quick.train.batch_size) == (2, 256)
    assert (paper.train.epochs, paper.train.batch_size, paper.train.lr, paper.train.augment) == (50, 256, 1e-5, True)
    assert quick.method_params.weight_decay == 1e-3  # the method's preset for this dataset
    assert paper.suite("robustness").seeds == (0, 1, 2, 3, 4)


def test_user_overrides_win_and_are_parsed_by_type():
    cfg = resolve("weight_decay", "cmnist", overrides=[
        "train.lr=2/255", "train.samples=none", "train.augment=yes", "method.weight_decay=0",
        "robustness.seeds=1,2", 'robustness.grid={"pgd": {"full": ["1/255", 0.5]}}', "eval.suites=accuracy,robustness",
    ])
    assert cfg.train.lr == pytest.approx(2 / 255)
    assert cfg.train.samples is None and cfg.train.augment is True
    assert cfg.method_params.weight_decay == 0.0
    assert cfg.suite("robustness").seeds == (1, 2)
    assert cfg.suite("robustness").grid == {"pgd": {"full": [pytest.approx(1 / 255), 0.5]}}


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown key train.lrr; did you mean train.lr?"),
    ("train.lr=abc", "train.lr expects a finite number"),
    ("train.epochs=1.5", "train.epochs expects an integer"),
    ("train.epochs=-1", "train.epochs must be an integer >= 0, got -1"),
    ("train.augment=maybe", "train.augment expects true or false"),
    ("nosection.x=1", "unknown config section 'nosection'"),
    ("train.lr", "expected section.key=value"),
    ("robustness.grid={bad json", "robustness.grid expects a JSON object"),
    ("robustness.norm=l3", "robustness.norm must be one of linf, l2"),
])
def test_bad_overrides_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        resolve("vanilla", "cmnist", overrides=[override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_settings_of_a_disabled_suite_are_rejected_but_its_defaults_dropped():
    cfg = resolve("vanilla", "cmnist", overrides=["eval.suites=accuracy"])
    assert cfg.suite("robustness") is None
    with pytest.raises(ConfigError, match="add it to eval.suites"):
        resolve("vanilla", "cmnist", overrides=["eval.suites=accuracy", "robustness.steps=3"])


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="did you mean vanilla"):
        resolve("vanila", "cmnist")
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve("vanilla", "cmnist", profile="fast")


def test_keys_are_deterministic_and_seed_aware():
    a, b = resolve("vanilla", "cmnist", seed=1), resolve("vanilla", "cmnist", seed=1)
    c = resolve("vanilla", "cmnist", seed=2)
    assert a.key() == b.key() and len(a.key()) == 16
    assert a.key() != c.key()
    assert a.key(with_seed=False) == c.key(with_seed=False)


def test_round_trip_through_plain_data():
    cfg = resolve("weight_decay", "cmnist", seed=3, overrides=["train.lr=1e-4", "robustness.seeds=4,5"])
    again = from_dict(cfg.to_dict())
    assert isinstance(again, RunConfig)
    assert again.to_json() == cfg.to_json()


def test_parse_overrides_groups_sections():
    assert parse_overrides(["train.lr=1", "train.epochs=2", "eval.samples=3"]) == {
        "train": {"lr": "1", "epochs": "2"}, "eval": {"samples": "3"}}


def test_coerce_fixed_tuple_length():
    assert coerce("0.8,0.9", tuple[float, float], "k") == (0.8, 0.9)
    with pytest.raises(ConfigError, match="expects 2 values"):
        coerce("0.8", tuple[float, float], "k")
