"""The peer of `bench scale`: a plain Ray Tune script over the same trials, as a user would write it.

    python -m bench.scale_peer STUDY.yaml OUT.json

One function trainable calls `s3l_core.trainer.train` on each seed's config and reports the
result once; a grid over the seeds, 2 at a time, `reuse_actors=True`, an embedded Ray on
loopback. A callback notes when each trial ends; OUT.json gets those times and each trial's
train() wall, for the same per-decile overhead `bench scale` computes for `run`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    import ray
    import torch
    from ray import tune

    from s3l_core.trainer import train
    from sweeper.tune.loopback import start_local_ray
    from sweeper.study.load import load_study

    study = load_study(Path(argv[0]))
    base = study.trial_config({"seed": study.seeds[0]})

    def trainable(config: dict) -> None:
        torch.set_num_threads(1)
        started = time.perf_counter()
        result = train(dataclasses.replace(base, seed=config["seed"], device="cpu"))
        tune.report({"knn_top1": result.knn_top1, "train_wall_s": time.perf_counter() - started})

    class Landings(tune.Callback):
        def __init__(self) -> None:
            self.landed: list[float] = []
            self.walls: list[float] = []

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001 (Ray's signature)
            self.landed.append(time.time())
            self.walls.append(float(trial.last_result["train_wall_s"]))

    landings = Landings()
    start_local_ray(num_cpus=2, log_to_driver=False)
    start = time.time()
    with tempfile.TemporaryDirectory() as storage:
        tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"seed": tune.grid_search(list(study.seeds))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True, metric="knn_top1", mode="max"),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[landings]),
        ).fit()
    ray.shutdown()
    Path(argv[1]).write_text(json.dumps({"start": start, "landed": landings.landed, "train_walls": landings.walls}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
