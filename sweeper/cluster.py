"""Attaching the driver to Ray: a cluster's address, a fast reachability check, an embedded Ray
on loopback otherwise, and refusing a study no node can place."""

from __future__ import annotations

import os
import socket

import ray

from sweeper.credentials import keep_credentials_from_ray
from sweeper.loopback import start_local_ray
from sweeper.store import StoreError
from sweeper.study import Study

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
    credentials into its trials' runtime envs (`sweeper/credentials.py`: Ray logs those in plain text).
    """
    keep_credentials_from_ray()
    if ray.is_initialized():
        return
    if not address:
        start_local_ray(log_to_driver=True)
        return
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=True)
    except Exception as exc:  # noqa: BLE001 (Ray raises ConnectionError, RuntimeError, AuthenticationError ...)
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}; {_connect_hint()}") from None


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

