"""Attaching the driver to Ray: a cluster's address, a fast reachability check, an embedded Ray
on loopback otherwise, and refusing a study no node can place."""

from __future__ import annotations

import os
import socket
import sys

import ray

from sweeper.tune.credentials import keep_credentials_from_ray
from sweeper.tune.loopback import start_local_ray
from sweeper.store.local import StoreError
from sweeper.study.load import Study

EMBEDDED = "local"  # the address that means this process's own Ray, like no address at all
CONNECT_TIMEOUT_S = 5.0


class ClusterError(RuntimeError):
    """The Ray cluster to attach to cannot be reached or joined."""


def cluster_address(study: Study, address: str | None) -> str | None:
    """The cluster to attach to (`--address`, else RAY_ADDRESS, else cluster.address), or None
    for an embedded Ray; `local` also means embedded."""
    chosen = address or os.environ.get("RAY_ADDRESS") or study.cluster.address
    return None if not chosen or chosen.strip() == EMBEDDED else chosen.strip()


def connect(address: str | None) -> None:
    """Attach to a cluster, or start an embedded Ray bound to loopback with no dashboard.

    An unreachable address fails within seconds with one line (`ClusterError`), instead of
    Ray's minutes of retries and its traceback. Ray Tune is kept from copying the driver's AWS
    credentials into its trials' runtime envs (`sweeper/tune/credentials.py`: Ray logs those in plain text).
    """
    keep_credentials_from_ray()
    if ray.is_initialized():
        return
    if not address:
        try:
            start_local_ray(log_to_driver=True)
        except Exception as exc:  # noqa: BLE001 (Ray raises a bare Exception for a start timeout, RuntimeError, OSError ...)
            _shutdown_quietly()  # whatever Ray did start (its GCS, say) must not outlive the refused run
            raise ClusterError(embedded_start_failure(exc)) from None
        return
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=True)
    except Exception as exc:  # noqa: BLE001 (Ray raises ConnectionError, RuntimeError, AuthenticationError ...)
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}; {_connect_hint()}") from None


def embedded_start_failure(exc: BaseException) -> str:
    """One line for an embedded Ray that did not start: Ray's own first line and the likely cause."""
    reason = _first_line(exc)
    temp_dir = ray_temp_dir()
    if "timed out" in reason.lower():  # Ray waits 30 s for its raylet to register with its GCS
        load = os.getloadavg()[0]
        cause = (f"likely cause: this machine is too busy for Ray's processes to start in time (load average {load:.1f} "
                 f"on {os.cpu_count()} CPUs), or {temp_dir} is slow or full; run again when the load is lower, "
                 "or attach to a running cluster with --address")
    else:
        cause = (f"likely cause: Ray's temp folder {temp_dir} (RAY_TMPDIR, else TMPDIR, else /tmp) is not writable, is full, "
                 "or its path is too long for Ray's sockets (107 bytes); set RAY_TMPDIR to a short writable folder, "
                 "or attach to a running cluster with --address")
    return f"cannot start the embedded Ray on 127.0.0.1: {reason}; {cause}"


def ray_temp_dir() -> str:
    """Where Ray puts its sessions, by Ray's own rule (`ray._common.utils.get_default_ray_temp_dir`)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None) or "/tmp"
    return os.path.join(base, "ray")


def _shutdown_quietly() -> None:
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 (the start error is the one to report)
        pass


def check_reachable(address: str) -> None:
    """Raise `ClusterError` unless `HOST:PORT` (or `ray://HOST:PORT`) accepts a TCP connection."""
    if address == "auto":
        return  # Ray looks up the cluster this machine belongs to
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason}; check the host name and port, "
                           "that `ray start --head` runs there, and that no firewall blocks the port") from None


def _connect_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ("a `ray start` cluster of Ray 2.60 uses token authentication: export RAY_AUTH_MODE=token and the "
                "cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token from the head) here, then run again")
    return "check that RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds the head node's token and that this Ray version matches the cluster's"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def available_resources(address: str | None) -> dict[str, float]:
    """What trials can use: the Ray this process is attached to (attaching if `address` is
    given), or, for an embedded Ray not started yet, this machine's CPUs and GPUs."""
    if address is None and not ray.is_initialized():
        import torch

        return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    connect(address)
    return ray.cluster_resources()


def check_capacity(study: Study) -> None:
    """Refuse a study no node can ever place, instead of letting it wait forever."""
    cluster = ray.cluster_resources()
    need_gpu, need_cpu = study.resources.gpu, study.resources.cpu
    if need_gpu > cluster.get("GPU", 0):
        raise StoreError(f"each trial asks for {need_gpu:g} GPU but the Ray cluster has {cluster.get('GPU', 0):g} GPUs; set resources.gpu: 0 or attach to a GPU cluster")
    if need_cpu > cluster.get("CPU", 0):
        raise StoreError(f"each trial asks for {need_cpu:g} CPUs but the Ray cluster has {cluster.get('CPU', 0):g}")

