"""What a study will cost before it runs: FLOPs and wall time per trial (`cost_model`), the measured
CPU rate (`device_rate`) and the table `estimate` prints (`render`)."""

from sweeper import lazy_exports

__getattr__ = lazy_exports(__name__, {"render_estimate": "render", "predicted_cost": "cost_model", "makespan": "cost_model", "cpu_trial_seconds": "device_rate"})  # fmt: skip

__all__ = [
    "cpu_trial_seconds",
    "makespan",
    "predicted_cost",
    "render_estimate",
]
