"""A study's space in Ray Tune's form, and a config Tune sampled back into a point (Optuna's adaptive
search; grid and random points reach Ray one per trial through `point_queue`)."""

from __future__ import annotations

import json
from typing import Any

from ray import tune

from sweeper.study.model import ENUMERATED, Study
from sweeper.study.space import Point, json_encoded


def to_ray_space(study: Study) -> dict[str, Any]:
    """Flat `{dotted_key: tune domain}` for Ray Tune (seeds are not included).

    grid -> `tune.grid_search` (or `tune.choice` under Optuna, which cannot grid-search),
    choice -> `tune.choice`, uniform / loguniform -> `tune.uniform` / `tune.loguniform`,
    int -> `tune.randint(lo, hi + 1)`. Non-scalar choice values (resolution stage lists) are
    JSON strings; `from_ray_config` turns a sampled config back into a point.
    """
    optuna = study.search.algorithm.startswith("optuna")
    out: dict[str, Any] = {}
    for key, spec in study.space.items():
        if spec.kind in ENUMERATED:
            values = [json.dumps(v, sort_keys=True) for v in spec.values] if json_encoded(spec) else list(spec.values)
            out[key] = tune.grid_search(values) if spec.kind == "grid" and not optuna else tune.choice(values)
        elif spec.kind == "uniform":
            out[key] = tune.uniform(*spec.values)
        elif spec.kind == "loguniform":
            out[key] = tune.loguniform(*spec.values)
        else:
            lo, hi = spec.values
            out[key] = tune.randint(int(lo), int(hi) + 1)
    return out


def from_ray_config(study: Study, config: dict[str, Any]) -> Point:
    """The point (space keys, plus `seed` if present) of a config sampled from `to_ray_space`."""
    point: Point = {}
    for key, spec in study.space.items():
        value = config[key]
        point[key] = json.loads(value) if json_encoded(spec) and isinstance(value, str) else value
    if "seed" in config:
        point["seed"] = config["seed"]
    return point
