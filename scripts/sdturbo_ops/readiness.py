"""The one definition of "ready": the per-worker state files, read the way plugins/readiness reads them.

Each TorchServe worker of our handler writes into ``$SDSERVE_STATE_DIR`` (handler/worker_state.py):
``<pid>.json`` holding ``{"state": "ready"}`` after load and warm-up or ``{"state": "failed", ...}``, and
``<pid>.busy`` while it runs a batch. The serve entrypoint adds ``draining`` on SIGTERM. The rule, which
the Java plugin behind ``/ping`` implements too (plugins/readiness, StateFolder.java; a test holds the two
together):

1. ``draining`` present: not ready.
2. Only files of live processes count: a worker that died (killed mid-batch, crashed) leaves its files
   behind, and they must neither keep a server "ready" nor hold a drain for a batch nobody runs.
3. Ready when a live worker says ``ready``; else failed when a live worker says ``failed``; else loading.

Python callers (LocalTorchServe, wait_ready, the serve entrypoint's drain, bench, soak, the tests) read
the folder through this module only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops.processes import pid_alive

# The folder handler/worker_state.py writes in. Its name is stated again here, not imported: the image ships
# this package without handler/ (the handler travels with the model), and the /ping plugin (Java) states it
# a third time; tests/sdturbo_ops/test_readiness.py holds the three equal.
STATE_DIR_ENV = "SDSERVE_STATE_DIR"
DRAINING = "draining"
# The reasons, word for word as the plugin's /ping gives them.
DRAINING_REASON = "draining: the server is shutting down"
FAILED_REASON = "the model failed to load (see the model log)"
LOADING_REASON = "no worker has finished loading and warming up"


@dataclass(frozen=True)
class Readiness:
    ready: bool
    problem: str | None  # why not, in /ping's words; None when ready
    failure: str | None = None  # a failed worker's own reason (the handler's), when one failed

    @property
    def failed(self) -> bool:
        return self.problem == FAILED_REASON


def _pids(state_dir: Path, suffix: str) -> list[int]:
    return [int(path.stem) for path in state_dir.glob(f"*{suffix}") if path.stem.isdigit()]


def _state(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):  # written atomically, so only a file removed under us lands here
        return {}
    return value if isinstance(value, dict) else {}


def read(state_dir: Path) -> Readiness:
    """The server's readiness from its state folder, by the rule above."""
    if (state_dir / DRAINING).exists():
        return Readiness(False, DRAINING_REASON)
    states = [_state(state_dir / f"{pid}.json") for pid in _pids(state_dir, ".json") if pid_alive(pid)]
    if any(state.get("state") == "ready" for state in states):
        return Readiness(True, None)
    failed = [state for state in states if state.get("state") == "failed"]
    if failed:
        return Readiness(False, FAILED_REASON, str(failed[0].get("reason") or "no reason given"))
    return Readiness(False, LOADING_REASON)


def worker_pids(state_dir: Path) -> list[int]:
    """Pids of the workers that wrote a state file here, alive or not."""
    return sorted(set(_pids(state_dir, ".json") + _pids(state_dir, ".busy")))


def busy_workers(state_dir: Path) -> list[int]:
    """Pids of live workers that are running a batch now."""
    return sorted(pid for pid in _pids(state_dir, ".busy") if pid_alive(pid))


def mark_draining(state_dir: Path) -> None:
    """From now on the folder says "not ready" (so does /ping): the server is shutting down."""
    (state_dir / DRAINING).touch()
