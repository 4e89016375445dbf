"""Worker processes on this machine (execution.backend: processes), for populations whose LLM
agents keep one process's CPU busy (request building, parsing, validation).

Each worker is a fresh Python process (`python -m simworld.execution.processes`, not a fork:
the driver holds threads and an event loop; and not multiprocessing's spawn, which imports the
caller's main script again, a notebook's or a script's without a main guard) that builds its
shards' policies from the scenario and answers one request per round over a socket pair. The
driver waits for the sockets in threads, so its event loop keeps running.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from simworld.errors import SimworldError
from simworld.execution.sharded import ShardedExecutor, ThreadedHost, WorkerDied
from simworld.execution.wire import Reply, Request, ShardWorker, WorkerSetup

START_TIMEOUT_S = 300.0  # a worker imports simworld and may load the embedded model


def _serve(conn: Connection) -> None:
    """A worker process: build from the setup, then answer requests until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it closes the workers
    setup: WorkerSetup = conn.recv()
    try:
        worker = ShardWorker(setup)
    except Exception as exc:  # noqa: BLE001 (sent to the driver as one line)
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", worker.ready()))
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request is None:
                return
            conn.send(worker.decide(request))
    finally:
        worker.close()


class ProcessHost(ThreadedHost):
    """One worker process and the driver's end of its pipe."""

    def _launch(self) -> None:
        mine, theirs = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(self.setup)

    def wait_ready(self) -> None:
        if not self.conn.poll(START_TIMEOUT_S):
            self.close()
            raise SimworldError(f"worker process {self.index} did not start within {START_TIMEOUT_S:g} s")
        try:
            status, detail = self.conn.recv()
        except (EOFError, OSError):
            raise SimworldError(f"worker process {self.index} exited while starting "
                                f"(exit code {self.process.wait()})") from None
        if status != "ready":
            self.close()
            raise SimworldError(f"worker process {self.index} could not build its agents: {detail}")
        self.pid = detail

    def _call(self, request: Request) -> Reply:
        try:
            self.conn.send(request)
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerDied(f"process {self.pid} ended (exit code {self.process.wait()}): "
                             f"{type(exc).__name__}") from None

    def stop(self) -> None:
        """Ask the worker to end (without waiting for it)."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.stop()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


class ProcessExecutor(ShardedExecutor):
    """The shards on `workers` processes of this machine."""

    backend = "processes"
    host_class = ProcessHost

    def close(self) -> None:
        for host in self.hosts:  # all end side by side
            host.stop()
        super().close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
