"""Configurations are named by how they differ, not by config-key digits."""

import json

import pandas as pd

from benchmark.results.labels import configuration_labels


def rows_of(configs: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame({"config_key": list(configs), "config": [json.dumps(c) for c in configs.values()]})


def config(**method) -> dict:
    return {"method": {"lambda_s": 0.1, "rho_x": 0.1, "reference": False, **method},
            "run": {"seed": 3, "versions": {"torch": "x"}}, "train": {"lr": 0.001}}


def test_each_configuration_is_named_by_its_settings_that_differ_from_the_common_ones():
    rows = rows_of({"k_full": config(), "k_mask": config(lambda_s=0.0, rho_x=0.0), "k_ref": config(reference=True),
                    "k_van": {"method": {}, "train": {"lr": 0.001}}})
    groups = [("cmnist", "quick", "hsplid", k) for k in ("k_full", "k_mask", "k_ref")] + \
        [("cmnist", "quick", "vanilla", "k_van")]
    names = configuration_labels(rows, groups)
    # hsplid's quick defaults turn its terms off (lambda_s = rho_x = 0): the mask point is the bare name
    assert names == {groups[0]: "hsplid lambda_s=0.1 rho_x=0.1", groups[1]: "hsplid",
                     groups[2]: "hsplid lambda_s=0.1 reference=True rho_x=0.1", groups[3]: "vanilla"}


def test_settings_every_configuration_shares_name_none_of_them():
    """A board of a longer schedule: every hsplid run has lr=1e-4 and no warm start, which differ
    from the defaults but tell the configurations apart no more than the seed does."""
    longer = {"lr": 0.0001, "epochs": 10}
    rows = rows_of({"k_full": {**config(warmup_epochs=0), "train": longer},
                    "k_mask": {**config(warmup_epochs=0, lambda_s=0.0), "train": longer}})
    groups = [("cmnist", "quick", "hsplid", k) for k in ("k_full", "k_mask")]
    assert configuration_labels(rows, groups) == {groups[0]: "hsplid lambda_s=0.1", groups[1]: "hsplid"}


def test_configurations_that_settings_cannot_tell_apart_keep_their_key_digits():
    rows = rows_of({"aaaaaaa1": config(), "bbbbbbb2": config()})
    groups = [("cmnist", "quick", "hsplid", "aaaaaaa1"), ("cmnist", "quick", "hsplid", "bbbbbbb2")]
    assert sorted(configuration_labels(rows, groups).values()) == ["hsplid aaaaaa", "hsplid bbbbbb"]
    long = {f"k{i}": config(**{f"option_with_a_long_name_{j}": i for j in range(5)}) for i in range(3)}
    groups = [("d", "p", "m", k) for k in long]
    names = configuration_labels(rows_of(long), groups)  # five long differences: too long for a name
    assert names[groups[1]] == "m k1" and names[groups[2]] == "m k2"
