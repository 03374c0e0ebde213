"""Sweep-space expansion: a study's `space` and `seeds` become flat trial points.

A point is `{dotted_key: value, ..., "seed": s}`; `s3l_core.config.apply_overrides` turns it
into the trial mapping that `TrialConfig.from_dict` takes. Expansion is deterministic on every call and
machine (results are reused by hashing each resolved config), and random draws are keyed
by (search seed, sample index, knob), so raising `num_samples` keeps the earlier samples
and adding a knob leaves the other knobs' draws unchanged.

Ray's form of the space (for Optuna's adaptive search) is `sweeper/tune/search_space.py`.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from typing import Any

from sweeper.study.model import ENUMERATED, SpaceSpec, Study

Point = dict[str, Any]

SAMPLED_DIGITS = 6  # significant digits kept of a sampled real number


def grid_points(study: Study) -> list[Point]:
    """Cartesian product of the grid/choice entries in file order, then x seeds (inner)."""
    keys = list(study.space)
    not_enumerable = [k for k in keys if study.space[k].kind not in ENUMERATED]
    if not_enumerable:
        raise ValueError(f"grid search enumerates grid and choice entries only, not {not_enumerable}")
    points = []
    for combo in itertools.product(*(study.space[k].values for k in keys)):
        for seed in study.seeds:
            point = {k: copy.deepcopy(v) for k, v in zip(keys, combo)}
            point["seed"] = seed
            points.append(point)
    return points


def random_points(study: Study, num_samples: int, seed: int) -> list[Point]:
    """`num_samples` seeded draws of the non-grid entries, each crossed with every grid
    combination (as Ray's variant generator does) and then with every seed."""
    keys = list(study.space)
    grid_keys = [k for k in keys if study.space[k].kind == "grid"]
    points = []
    for i in range(num_samples):
        draws = {
            k: _draw(spec, random.Random(f"{seed}:{i}:{k}"))
            for k, spec in study.space.items()
            if spec.kind != "grid"
        }
        for combo in itertools.product(*(study.space[k].values for k in grid_keys)):
            fixed = dict(zip(grid_keys, combo))
            for s in study.seeds:
                point = {k: copy.deepcopy(fixed[k] if k in fixed else draws[k]) for k in keys}
                point["seed"] = s
                points.append(point)
    return points


def points(study: Study) -> list[Point]:
    """The trial points of a grid or random study (Optuna studies are sampled by Optuna)."""
    algorithm = study.search.algorithm
    if algorithm == "grid":
        return grid_points(study)
    if algorithm == "random":
        return random_points(study, study.search.num_samples, study.search.seed)
    raise ValueError(f"{algorithm} samples its points adaptively; use sweeper.tune.search_space.to_ray_space")


def _draw(spec: SpaceSpec, rng: random.Random) -> Any:
    r = rng.random()  # one draw per knob: only random() is used, whose output is stable across versions
    if spec.kind == "choice":
        n = len(spec.values)
        return spec.values[min(int(r * n), n - 1)]
    lo, hi = spec.values
    if spec.kind == "int":
        return int(lo) + min(int(r * (hi - lo + 1)), int(hi - lo))
    if spec.kind == "uniform":
        x = lo + r * (hi - lo)
    else:  # loguniform
        x = math.exp(math.log(lo) + r * (math.log(hi) - math.log(lo)))
    # Rounding keeps configs readable and absorbs last-bit libm differences between machines.
    return min(max(float(f"{x:.{SAMPLED_DIGITS}g}"), float(lo)), float(hi))


# ------------------------------------------------------------------------------ Ray Tune


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def json_encoded(spec: SpaceSpec) -> bool:
    """Optuna's categorical values must be plain scalars: lists of stages travel as JSON text."""
    return spec.kind in ENUMERATED and not all(_is_plain(v) for v in spec.values)
