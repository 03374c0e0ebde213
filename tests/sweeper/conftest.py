"""Shared fixtures: tiny real studies on the shipped Fashion-MNIST sample, and a loopback Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY_TRIAL = {
    "method": "simclr",
    "backbone": {"depth": 10, "width": 0.125, "stages": 4},
    "resolution": 8,
    "epochs": 2,
    "data_fraction": 0.02,
    "batch_size": 64,
    "eval": {"every": 1, "knn_k": 10, "linear_probe": False, "floors": False, "resolution": 8},
}


def write_study(directory: Path, name: str = "tiny", grid: list | None = None, seeds: list | None = None, **top) -> Path:
    """A real, CPU-sized study file whose store and report live under `directory`."""
    study = {
        "name": name,
        "dataset": "fashion-mnist-sample",
        "trial": TINY_TRIAL,
        "space": {"resolution": {"grid": grid or [8, 12]}},
        "seeds": seeds or [0],
        "search": {"algorithm": "grid"},
        "objectives": {"knn_top1": "max", "train_pflops": "min"},
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent": 2,
        "failure": {"max_retries": 1},
        "storage": str(directory / "runs"),
        "report": str(directory / "reports"),
        **top,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def local_ray():
    """A small real Ray on loopback, shared by the in-process sweeper tests."""
    import ray

    from sweeper.tune.loopback import start_local_ray

    start_local_ray(num_cpus=2, log_to_driver=False)
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_start_spy(monkeypatch) -> list[dict]:
    """Replaces Ray's start with a spy that refuses; the list holds each attempted start.

    `is_initialized` answers False as in a fresh `run` process: an earlier test may have left a
    Ray up in this one, which a run would reuse instead of starting one, hiding a Ray start."""
    import ray

    starts: list[dict] = []

    def refuse(*args, **kwargs):
        starts.append(kwargs)
        raise RuntimeError("test: Ray must not start for a refused run")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    return starts
