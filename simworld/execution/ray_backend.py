"""Shards as Ray actors (execution.backend: ray): the driver joins the cluster at
`execution.address`, or starts a local Ray for the run.

A plain local Ray reaches off the machine (it probes cloud metadata addresses and binds to
the external interface). So a local Ray is started only where this process sees no network
interface but loopback (a loopback-only network namespace: README "Worker processes and Ray"), pinned to
127.0.0.1, without the dashboard, with usage stats and the cloud probe off; set SIMWORLD_RAY_ALLOW_NETWORK=1
to start one on a machine where Ray may use the network. An address is checked with a plain
TCP connect first: Ray itself waits minutes before it gives up on an unreachable one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from simworld.config import ExecutionSpec
from simworld.errors import SimworldError
from simworld.execution.sharded import ShardedExecutor, ThreadedHost, WorkerDied
from simworld.execution.wire import Reply, Request, ShardWorker

ALLOW_NETWORK_ENV = "SIMWORLD_RAY_ALLOW_NETWORK"
# A command prefix that runs a command in a fresh network namespace holding only loopback (Linux):
# where a local Ray may start on machines that must not reach out (tests and benchmarks use it).
LOOPBACK_NAMESPACE = ["unshare", "--map-root-user", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"ray": 10001, "": 6379}  # Ray Client's port; the GCS port


def check_address(address: str) -> None:
    """SimworldError, one sentence, unless a TCP connect to the address's host and port succeeds."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        host, port = None, None
    if parts.scheme not in ("", "ray") or not host or port is None:
        raise SimworldError(f"execution.address {address!r} is not a Ray address: give 'ray://host:10001' "
                            "(Ray Client) or 'host:6379' (a node of the cluster)")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise SimworldError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it there "
                            "with `ray start --head` or check the address") from None


def loopback_only() -> bool:
    """True when this process sees no network interface but loopback."""
    return all(name == "lo" for _, name in socket.if_nameindex())


def connect(spec: ExecutionSpec) -> bool:
    """Join the cluster at spec.address, or start a local Ray; False when this process had
    already joined one (it is left as it is at the end of the run)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if spec.address is not None:
        check_address(spec.address)
        try:
            ray.init(address=spec.address, logging_level=logging.WARNING, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError) as exc:
            raise SimworldError(f"could not join the Ray cluster at {spec.address}: {exc}") from None
        return True
    if not loopback_only() and os.environ.get(ALLOW_NETWORK_ENV) != "1":
        raise SimworldError("a local Ray would reach off this machine (cloud metadata probes, the external "
                            "interface): run inside a loopback-only network namespace (README, 'Worker processes "
                            "and Ray'), "
                            f"give execution.address, or set {ALLOW_NETWORK_ENV}=1 where Ray may use the network")
    with _no_cloud_probe():
        ray.init(num_cpus=spec.workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    return True


_SCRATCH: list[str] = []


def _remove_scratch() -> None:
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


@contextlib.contextmanager
def _no_cloud_probe():
    """HOME, while Ray starts its processes, is a scratch folder holding an empty
    ray_bootstrap_config.yaml: Ray's head (its usage-stats module, loaded even without the
    dashboard and with usage stats off) reads that file and, when there is none, probes cloud
    metadata addresses (169.254.169.254, metadata.google.internal) to name its cloud. Inside a
    loopback-only namespace those connects fail at once; with the file they are never made."""
    scratch = tempfile.mkdtemp(prefix="simworld-ray-home-")
    if not _SCRATCH:
        atexit.register(_remove_scratch)  # also when Ray is stopped by others than the executor
    _SCRATCH.append(scratch)  # removed when the run's Ray stops
    Path(scratch, "ray_bootstrap_config.yaml").write_text("{}\n")
    home = os.environ.get("HOME")
    os.environ["HOME"] = scratch
    try:
        yield
    finally:
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home


_REMOTE = None


def _remote_worker():
    """ShardWorker as a Ray actor class (made once; not restarted by Ray: the driver does it)."""
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(max_restarts=0)(ShardWorker)
    return _REMOTE


class RayHost(ThreadedHost):
    """One Ray actor holding a worker's shards."""

    def _launch(self) -> None:
        self.actor = _remote_worker().remote(self.setup)
        self._ready = self.actor.ready.remote()

    def wait_ready(self) -> None:
        import ray

        try:
            self.pid = ray.get(self._ready)
        except ray.exceptions.RayError as exc:
            raise SimworldError(f"Ray actor {self.index} could not build its agents: "
                                f"{str(exc).strip().splitlines()[-1]}") from None

    def _call(self, request: Request) -> Reply:
        import ray

        try:
            return ray.get(self.actor.decide.remote(request))
        except ray.exceptions.RayActorError as exc:
            raise WorkerDied(f"actor {self.index} (pid {self.pid}) died: {type(exc).__name__}") from None

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.kill(self.actor, no_restart=True)


class RayExecutor(ShardedExecutor):
    """The shards as `workers` Ray actors; Ray is joined (or started) when the world is built,
    so an unreachable address fails before the first round."""

    backend = "ray"
    host_class = RayHost

    def __init__(self, spec: ExecutionSpec, run_id: str):
        super().__init__(spec, run_id)
        self._joined = connect(spec)

    def close(self) -> None:
        import ray

        super().close()
        if self._joined and ray.is_initialized():
            ray.shutdown()  # leaves the cluster; a local Ray started for the run stops with it
            _remove_scratch()
