"""What a study will cost before it runs: FLOPs and wall time per trial (`cost_model`), the measured
CPU rate (`device_rate`) and the table `estimate` prints (`render`)."""

from sweeper import lazy_exports

_PUBLIC = {"render_estimate": "render", "predicted_cost": "cost_model", "makespan": "cost_model", "cpu_trial_seconds": "device_rate"}  # fmt: skip
__getattr__ = lazy_exports(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
