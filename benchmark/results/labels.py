"""Names of configurations: "hsplid lambda_s=0 rho_x=0" reads better than a config key's digits.

One method can appear in several configurations on a board (sweep grid points, an ablation, runs
with different `--set` values). Each is named by the method plus the settings in which it
differs from that method's defaults (`benchmark run` with no `--set`; for a method not registered
here, its most common value on the board) and from the other configurations of the method on the
board (a setting they all share, e.g. a longer schedule, names none of them); the configuration
that differs in nothing keeps the bare name. Where the settings do not tell them apart (other code versions),
the config key's first digits do.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from benchmark.results.context import context_of, flat_settings

MAX_LABEL = 60


def shown(key: str, value: str) -> str:
    name = key.split(".", 1)[1] if key.startswith("method.") else key
    parsed: Any = json.loads(value)
    return f"{name}={parsed:g}" if isinstance(parsed, float) else f"{name}={parsed}"


def configuration_labels(rows: pd.DataFrame, groups: list[tuple]) -> dict[tuple, str]:
    """groups are (dataset, profile, method, config_key); rows carry `config_key` and `config`."""
    firsts = rows.drop_duplicates("config_key").set_index("config_key", drop=False)
    configs = firsts["config"]
    settings = {g: flat_settings(configs.get(g[3], "")) for g in groups}
    out: dict[tuple, str] = {}
    for method in {g[2] for g in groups}:
        same = [g for g in groups if g[2] == method]
        if len(same) == 1:
            out[same[0]] = method
            continue
        keys = sorted({k for g in same for k in settings[g]})
        common = {k: Counter(settings[g].get(k, "null") for g in same).most_common(1)[0][0] for k in keys}
        dataset, profile, _, key = same[0]  # the method's defaults, as its file recorded them
        common.update(context_of({**firsts.loc[key].to_dict(), "dataset": dataset, "profile": profile,
                                  "method": method}).defaults)
        # settings every configuration of the method shares (e.g. a longer schedule for all)
        # tell none of them apart: they stay out of the names
        varying = [k for k in keys if len({settings[g].get(k, "null") for g in same}) > 1]
        for g in same:
            differs = [shown(k, settings[g].get(k, "null")) for k in varying
                       if settings[g].get(k, "null") != common[k] and k in settings[g]]
            text = " ".join(differs)
            out[g] = f"{method} {text}" if text and len(text) <= MAX_LABEL else \
                f"{method} {str(g[3])[:6]}" if text else method
    names = Counter(out.values())
    return {g: f"{name} {str(g[3])[:6]}" if names[name] > 1 else name for g, name in out.items()}


def reference_group(groups: list[tuple], names: dict[tuple, str], reference: str) -> tuple | None:
    """The configuration differences are taken to: `reference` is a label as the tables print it
    ("hsplid lambda_s=0.1"), a config key or its first digits, or a method name (its configuration
    at the method's defaults where there are several: the one named by the bare method name)."""
    for match in ([g for g in groups if names.get(g) == reference],
                  [g for g in groups if reference and str(g[3]).startswith(reference)],
                  [g for g in groups if g[2] == reference]):
        if match:
            return next((g for g in match if names.get(g) == g[2]), sorted(match)[0])
    return None
