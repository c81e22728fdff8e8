"""Stopping a run on SIGTERM or SIGINT, at any phase, with every process stopping together.

- While the run is being built (before the first step), a signal stops the process at once:
  nothing has trained, so nothing is saved.
- While stepping, the first signal is a request. At the next step boundary every process learns
  of any process's request through one small all-reduce (the largest signal number wins, so a
  SIGTERM reaching one rank of many stops them all as SIGTERM); all then save the same step,
  if a step trained since the last checkpoint, and exit with 128 + the signal's number.
- While waiting for data, the request is the same, but if the data does not come within
  :data:`GRACE_S` seconds (a stalled shard server, an unreachable URL) the process stops at
  once; one process alone then saves the step it has finished, several do not (the others may
  be inside a collective, so a collective save could hang).
- A signal to the whole process group (``timeout``, a terminal's Ctrl-C) also ends the
  DataLoader workers (torch's workers die on a SIGTERM not sent by their parent); the error
  their end raises in the main process is taken as the stop, as above.
- A second signal stops at once in any phase.
- A process stuck in a call that never returns to Python (a rank waiting at the rendezvous for
  peers that never come, a native read that retries through signals) cannot run a handler: a
  watchdog thread, woken by the signal itself (``signal.set_wakeup_fd``), ends it with
  ``os._exit(128 + signal)`` if it is still building or waiting for data :data:`HARD_S`
  seconds after its grace. Nothing is saved then, and nothing partial can exist yet.

A stop "at once" goes through the handler that was there before (the command line turns
SIGTERM into its ``Terminated``), else raises KeyboardInterrupt (SIGINT) or SystemExit.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

GRACE_S = 5.0  # seconds a stop request waits for data before stopping at once
HARD_S = 5.0  # then seconds before a process that did not respond is ended by the watchdog
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """SIGTERM/SIGINT while a run is built (stop at once) and trains (a request read at step
    boundaries); see the module."""

    def __init__(self, device: torch.device | None = None, world: int = 1):
        self.device, self.world = device, world
        self.received: int | None = None
        self.stopped_waiting = False  # the stop came while waiting for data (after the grace)
        self.phase, self._epoch = "build", 0  # build | step | wait; epoch: changes of phase
        self._escalating = False
        self._timer: threading.Timer | None = None
        self._old: dict[int, object] = {}
        self._main = threading.main_thread().ident
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._old_wakeup = -1

    def __enter__(self) -> StopRequests:
        for sig in SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return self
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._wakeup = (reader, writer)
        threading.Thread(target=self._watch, args=(reader,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._cancel()
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._wakeup[1].close()  # the watchdog's read ends
            self._wakeup = None
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._set_phase("done")

    def start_stepping(self, device: torch.device, world: int) -> None:
        """The run is built: from here a signal is a request read at step boundaries."""
        self.device, self.world = device, world
        self._set_phase("step")

    def _set_phase(self, phase: str) -> None:
        self.phase, self._epoch = phase, self._epoch + 1

    # ------------------------------------------------------------------ the handler
    def _handle(self, signum: int, frame) -> None:
        if self._escalating:  # the grace timer's own signal
            self._escalating = False
            if self.phase == "wait":
                self.stopped_waiting = True
                self._now(signum, frame)
            return
        if self.received is not None or self.phase == "build":  # a second signal, or building
            self.received = signum
            self._now(signum, frame)
        self.received = signum
        if self.phase == "wait":
            self._arm()

    def _watch(self, reader: socket.socket) -> None:
        """The watchdog: the signal numbers the interpreter writes to the wakeup socket."""
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS and self.phase in ("build", "wait"):
                    self._end_if_stuck(signum, self.phase, self._epoch)

    def _end_if_stuck(self, signum: int, phase: str, epoch: int) -> None:
        threading.Event().wait(GRACE_S + HARD_S)
        if self._epoch == epoch and self.phase == phase:
            print(
                f"pixeldance train: no response to signal {signum} while "
                f"{'building the run' if phase == 'build' else 'waiting for data'} for "
                f"{GRACE_S + HARD_S:.0f} s; ended without saving",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)

    def _now(self, signum: int, frame) -> None:
        self._cancel()
        old = self._old.get(signum)
        if callable(old):
            old(signum, frame)  # e.g. the command line's SIGTERM -> Terminated
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def stop_now(self) -> None:
        """Stop at once as for a second signal (the request's signal)."""
        self._now(self.received or signal.SIGTERM, None)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(GRACE_S, self._escalate)
            self._timer.daemon = True
            self._timer.start()

    def _escalate(self) -> None:
        if self.received is None or self._main is None:
            return
        self._escalating = True
        signal.pthread_kill(self._main, self.received)  # wakes a blocking read in the main thread

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ the loop's side
    @contextmanager
    def waiting_for_data(self) -> Iterator[None]:
        """Around a read of the data stream: a request made before or during it stops the
        process if the data has not come within :data:`GRACE_S` seconds, or if the read
        fails (the signal also reached the DataLoader workers)."""
        self._set_phase("wait")
        if self.received is not None:
            self._arm()
        try:
            yield
        except Exception:
            if self.received is None:
                raise
            # the stop reached the data readers too (a signal to the whole process group
            # kills DataLoader workers): the failed read is the stop, not an error
            self.stopped_waiting = True
            self._now(self.received, None)
            raise
        finally:
            self._set_phase("step")
            self._cancel()

    def agreed(self) -> int:
        """At a step boundary, on every process (collective when there are several): the
        signal number some process received (the largest), or 0 to go on."""
        code = self.received or 0
        if self.world > 1:
            import torch.distributed as dist

            t = torch.tensor([code], dtype=torch.int64, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            code = int(t.item())
        return code
