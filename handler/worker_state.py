"""Per-worker state files: how a worker tells the serve entrypoint and the readiness plugin what it is doing.

TorchServe's own view of a worker ("loaded") says nothing about whether our model actually loaded and
warmed up, and it offers no hook to report it. So each worker process writes, in ``$SDSERVE_STATE_DIR``:

- ``<pid>.json``: ``{"state": "ready"}`` after warm-up, or ``{"state": "failed", "reason": ...}``
  (read by plugins/readiness, which answers ``/ping``);
- ``<pid>.busy``: present while a batch is being processed (read by scripts/serve.py to drain on SIGTERM).

Without ``SDSERVE_STATE_DIR`` (plain ``torchserve --start``) nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE_DIR_ENV = "SDSERVE_STATE_DIR"


class WorkerStateFiles:
    def __init__(self, state_dir: str | os.PathLike | None, pid: int | None = None):
        self.directory = Path(state_dir) if state_dir else None
        self.pid = pid if pid is not None else os.getpid()

    @classmethod
    def from_environment(cls) -> WorkerStateFiles:
        return cls(os.environ.get(STATE_DIR_ENV))

    def report(self, state: str, reason: str | None = None) -> None:
        """Atomically record ``ready`` or ``failed`` for this worker."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"state": state, "pid": self.pid}
        if reason:
            payload["reason"] = reason
        target = self.directory / f"{self.pid}.json"
        scratch = target.with_suffix(".tmp")
        scratch.write_text(json.dumps(payload))
        scratch.replace(target)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Mark this worker busy for the duration of a batch."""
        if self.directory is None:
            yield
            return
        marker = self.directory / f"{self.pid}.busy"
        marker.touch()
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)
