"""Keep an embedded Ray on 127.0.0.1.

Ray resolves "127.0.0.1" to the address it would use to reach the internet (its
`node_ip_address_from_perspective`), so `ray.init(_node_ip_address="127.0.0.1")` alone
still binds the GCS, raylet and workers to the machine's network interface. Ray's switch
for single-machine platforms (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) makes it use the
loopback address throughout; child processes read the variable, this process the constant.
Only for a Ray this process starts itself: a driver that joins a real cluster must not
call it, or remote nodes could not reach it.
"""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"
SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def pin_ray_to_loopback() -> None:
    os.environ[SWITCH] = "0"
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def start_local_ray(**kwargs) -> None:
    """Start a private Ray of this process, bound to loopback with no dashboard (kwargs go to
    `ray.init`). `address="local"`: never attach to a cluster that `ray start` recorded on this
    machine (or RAY_ADDRESS names); that is what `--address` is for."""
    import ray

    pin_ray_to_loopback()
    ray.init(address="local", include_dashboard=False, _node_ip_address=LOOPBACK, **kwargs)
