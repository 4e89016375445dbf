"""Run control for one viewer session: a Simulation stepped by a background thread under a lock.

Nothing here imports Streamlit, so the controller can be driven (and tested) on its own. The
page keeps one `RunController` per browser session; its thread is the only one that calls
`Simulation.step()`. Researcher interventions (persona edits, injected events) are applied
between rounds: at once when no round is in progress, otherwise queued and applied by the
worker just before the next round starts, so a round always sees one consistent world.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from simworld import runner
from simworld.config import Scenario
from simworld.errors import SimworldError

IDLE, RUNNING, PAUSED, FINISHED, STOPPED, FAILED = "idle", "running", "paused", "finished", "stopped", "failed"


@dataclass
class Status:
    """What the page shows about the run; a copy, safe to read from any thread."""

    state: str
    rounds_done: int
    rounds_planned: int
    busy: bool  # a round is being computed right now (or a requested step is about to start)
    run_dir: Path
    run_id: str
    error: str | None = None
    last_round_s: float | None = None
    queued: int = 0  # interventions waiting for the round in progress to end

    @property
    def live(self) -> bool:
        """The page should keep refreshing: rounds are still coming."""
        return self.state == RUNNING or self.busy


@dataclass
class _Intervention:
    kind: str  # "edit" | "inject"
    apply: Callable[[], None]
    label: str


@dataclass
class RunController:
    """Owns one Simulation and the one thread that steps it."""

    sim: Any  # simworld.runner.Simulation
    pace_s: float = 0.0  # extra pause between rounds, so a researcher can watch rounds arrive
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _state: str = PAUSED
    _steps: int = 0  # single steps requested
    _quit: bool = False
    _busy: bool = False
    _error: str | None = None
    _last_round_s: float | None = None
    _pending: list[_Intervention] = field(default_factory=list, repr=False)
    traceback_text: str | None = None  # of a failed round, for the page's "details" expander
    log: list[str] = field(default_factory=list)  # what the researcher did, newest last

    # -- creating -------------------------------------------------------------------------
    @classmethod
    def start(cls, scenario: Scenario | str | Path, *, out_dir: str | Path | None = None,
              rounds: int | None = None, seed: int | None = None, pace_s: float = 0.0,
              autoplay: bool = True) -> "RunController":
        """Build the world and its run folder (raises ScenarioError/SimworldError), then play."""
        sim = runner.start(scenario, out_dir=out_dir, rounds=rounds, seed=seed)
        ctl = cls(sim, pace_s=pace_s)
        if autoplay:
            ctl.play()
        return ctl

    @classmethod
    def resume(cls, run_dir: str | Path, *, pace_s: float = 0.0, autoplay: bool = False) -> "RunController":
        """Continue a stopped or interrupted run from its last complete round."""
        sim = runner.resume(run_dir)
        ctl = cls(sim, pace_s=pace_s)
        if sim.finished:
            ctl._state = FINISHED
        elif autoplay:
            ctl.play()
        return ctl

    @classmethod
    def branch(cls, run_dir: str | Path, round_no: int, settings: dict[str, Any], *, rounds: int | None = None,
               pace_s: float = 0.0, autoplay: bool = True) -> "RunController":
        """Branch a run after a completed round with changed settings (simworld/branch.py: its
        rounds up to there are replayed from the cache first), then play the branch."""
        from simworld.branch import start_branch

        sim = start_branch(run_dir, round_no, settings, rounds=rounds)
        ctl = cls(sim, pace_s=pace_s)
        if autoplay:
            ctl.play()
        return ctl

    # -- reading ----------------------------------------------------------------------------
    def status(self) -> Status:
        with self._cond:
            return Status(state=self._state, rounds_done=self.sim.rounds_done,
                          rounds_planned=self.sim.scenario.rounds, busy=self._busy or self._steps > 0,
                          run_dir=Path(self.sim.run_dir), run_id=self.sim.recorder.run_id,
                          error=self._error, last_round_s=self._last_round_s, queued=len(self._pending))

    @property
    def run_dir(self) -> Path:
        return Path(self.sim.run_dir)

    @property
    def world(self):
        return self.sim.world

    # -- control ----------------------------------------------------------------------------
    def play(self) -> None:
        """Run (or resume) rounds in the background until paused, stopped or finished."""
        with self._cond:
            if self._state in (FINISHED, STOPPED, FAILED):
                return
            self._state = RUNNING
            self._ensure_thread()
            self._cond.notify_all()

    def pause(self) -> None:
        """Stop after the round in progress (if any); the run can be resumed or stepped."""
        with self._cond:
            if self._state == RUNNING:
                self._state = PAUSED
            self._steps = 0

    def step(self) -> bool:
        """Run exactly one more round in the background (when paused); False if nothing to do."""
        with self._cond:
            if self._state != PAUSED or self.sim.finished or self._steps:
                return False
            self._steps = 1
            self._ensure_thread()
            self._cond.notify_all()
            return True

    def stop(self, wait_s: float = 30.0) -> None:
        """End the run after the round in progress; its folder stays resumable."""
        with self._cond:
            if self._state in (FINISHED, STOPPED, FAILED) and self._thread is None:
                return
            was = self._state
            self._quit = True
            self._steps = 0
            if was not in (FINISHED, FAILED):
                self._state = STOPPED
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)
        with self._lock:
            if was not in (FINISHED, FAILED, STOPPED):  # a run stopped by its budget keeps that reason
                self._write_summary("stopped", "stopped from the viewer")
            self.sim.close()

    def wait(self, timeout_s: float = 60.0, rounds: int | None = None) -> Status:
        """Block until the run is idle (no round in progress and not running), or `rounds` are done."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status()
            if rounds is not None and st.rounds_done >= rounds and not st.busy:
                return st
            if rounds is None and not st.live and not self._steps:
                return st
            time.sleep(0.02)
        return self.status()

    # -- researcher interventions -------------------------------------------------------------
    def edit_persona(self, agent_id: int, **changes: Any) -> str:
        """Change an agent's persona; it takes effect from the next round that starts."""

        return self._intervene(_Intervention("edit", lambda: self.sim.edit_persona(agent_id, **changes),
                                             f"edited agent {agent_id}: {', '.join(sorted(changes))}"))

    def inject(self, agent_ids: list[int], text: str, item_id: int | None = None) -> str:
        """Put a news text (or an ad pinning `item_id`) in front of these agents next round."""
        what = f"ad for item {item_id}" if item_id is not None else "news"
        return self._intervene(_Intervention(
            "inject", lambda: self.sim.inject(list(agent_ids), text, item_id),
            f"injected {what} to {len(agent_ids)} agent(s): {text[:60]}"))

    def interview(self, agent_id: int, question: str, remember: bool = False) -> str:
        """Ask an agent a question (see `Simulation.interview`)."""
        with self._lock:  # never while a round is being computed
            answer = self.sim.interview(agent_id, question, remember=remember)
        self.log.append(f"interviewed agent {agent_id}{' (remembered)' if remember else ''}")
        return str(answer)

    def memories(self, agent_id: int) -> tuple[str, list[Any]]:
        """(where they come from, the memories): the memory layer's if present, else recent events."""
        try:
            stored = self.sim.memories(agent_id)
        except Exception as exc:  # noqa: BLE001 - shown to the researcher, never a traceback
            return f"memory store unavailable ({type(exc).__name__}: {exc})", []
        if stored is not None:
            return "memory store", list(stored)
        state = self.sim.world.users[agent_id].state
        return "recent events (state.recent)", list(state.recent)

    def next_round_for_interventions(self) -> int:
        """The round an intervention made now first affects."""
        st = self.status()
        return st.rounds_done + (2 if st.busy else 1)

    # -- internals --------------------------------------------------------------------------
    def _intervene(self, item: _Intervention) -> str:
        if self._lock.acquire(blocking=False):
            try:
                item.apply()
            finally:
                self._lock.release()
            self.log.append(item.label)
            return "applied"
        with self._cond:
            self._pending.append(item)
        self.log.append(item.label + " (queued until the round in progress ends)")
        return "queued"

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._quit = False
            self._thread = threading.Thread(target=self._loop, name=f"simworld-{self.sim.recorder.run_id}",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._quit and self._state != RUNNING and not self._steps:
                    self._cond.wait()
                if self._quit:
                    return
                self._steps = 0
                self._busy = True
            try:
                self._one_round()
            finally:
                with self._cond:
                    self._busy = False
            with self._cond:
                if self._state == RUNNING and self.pace_s > 0:
                    self._cond.wait(self.pace_s)

    def _one_round(self) -> None:
        with self._lock:
            with self._cond:
                pending, self._pending = self._pending, []
            for item in pending:
                item.apply()
            if self.sim.finished:
                self._finish()
                return
            started = time.perf_counter()
            try:
                self.sim.step()
            except Exception as exc:  # noqa: BLE001 - a failed round is reported on the page
                message = str(exc) if isinstance(exc, SimworldError) else f"{type(exc).__name__}: {exc}"
                with self._cond:
                    self._error = message
                    self._state = FAILED
                    self._quit = True
                self._write_summary("failed", message)
                self.traceback_text = traceback.format_exc()
                return
            self._last_round_s = time.perf_counter() - started
            if self.sim.finished:
                self._finish()
                return
            spent = self.sim.budget_message()
            if spent:  # as in Simulation.run: stop at the round's end, resumable with a bigger budget
                with self._cond:
                    self._error = spent
                    self._state = STOPPED
                    self._quit = True
                self._write_summary("budget_exhausted", spent)

    def _finish(self) -> None:
        self.sim.finish()
        with self._cond:
            self._state = FINISHED
            self._quit = True

    def _write_summary(self, status: str, message: str) -> None:
        try:
            self.sim.mark(status, message)
        except OSError:
            pass

