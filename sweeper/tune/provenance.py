"""Where and with what a study ran. Deliberately records no environment variables."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import s3l_core

SOURCE_DIR = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=SOURCE_DIR, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance(cluster_resources: dict[str, float] | None = None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Where, and with which code, the study ran; `overrides` are its `--set KEY=VALUE`s, as given."""
    import ray
    import torch

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "s3l_core_version": s3l_core.__version__,
        "results_version": s3l_core.RESULTS_VERSION,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
        "driver_cpus": os.cpu_count(),
        "driver_gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cluster_resources": {k: v for k, v in (cluster_resources or {}).items() if k in ("CPU", "GPU", "memory")},
        "overrides": list(overrides),
    }
