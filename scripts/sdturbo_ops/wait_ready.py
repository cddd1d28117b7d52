"""Waiting for a TorchServe to become ready, and failing fast, with TorchServe's own reason, when it won't.

Ready is what the state folder says (sdturbo_ops.readiness). What ends the wait early comes from
TorchServe itself: the management API answers 404 for a model that was never registered (a missing
archive: ``ModelNotFoundException``), a worker process dies while loading (TorchServe would restart it
with growing back-off forever), or the server process is gone. The reason is then read from TorchServe's
log, where it said it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops import readiness
from sdturbo_ops.cli import Progress
from sdturbo_ops.management import model_description
from sdturbo_ops.paths import MODEL_NAME
from sdturbo_ops.processes import pid_alive


class NotReady(RuntimeError):
    """The server will not become ready: the message says why."""


class TimedOut(NotReady, TimeoutError):
    """Still not ready when the time was up."""


@dataclass
class Watch:
    """What a wait looks at: the state folder, TorchServe's management API and log, and (when this process
    started it) the server process."""

    state_dir: Path
    management_url: str
    model: str = MODEL_NAME
    log_dir: Path | None = None
    server_alive: Callable[[], bool] | None = None
    server_output: Callable[[], str] | None = None


def wait_ready(watch: Watch, timeout: float, progress: Progress | None = None, interval: float = 0.25) -> float:
    """Block until ``watch.state_dir`` says ready; returns the seconds waited.

    Raises:
        NotReady: the model failed to load, is not registered, a worker died while loading, or the server
            exited, each with TorchServe's (or the handler's) own words.
        TimedOut: after ``timeout`` seconds.
    """
    started = time.monotonic()
    workers_seen: set[int] = set()
    while True:
        state = readiness.read(watch.state_dir)
        if state.ready:
            return time.monotonic() - started
        if state.failed:
            raise NotReady(f"{watch.model} failed to load: {state.failure}")
        if watch.server_alive is not None and not watch.server_alive():
            raise NotReady(_server_gone(watch))
        status, description = model_description(watch.management_url, watch.model)
        if status == 404:
            raise NotReady(f"{watch.model} is not registered: TorchServe says "
                           f"{_registration_failure(watch) or description or 'model not found'}")
        pids = {int(w["pid"]) for m in description for w in m.get("workers", []) if int(w.get("pid", -1)) > 0}
        dead = [pid for pid in workers_seen | pids if not pid_alive(pid)]
        if dead and not readiness.read(watch.state_dir).ready:
            if _server_stopping(watch):  # a stopped TorchServe ends its workers first
                raise NotReady(_server_gone(watch))
            raise NotReady(f"{watch.model}'s worker (pid {dead[0]}) died while loading: TorchServe says "
                           f"{_worker_death(watch)}")
        workers_seen |= pids
        waited = time.monotonic() - started
        if waited > timeout:
            raise TimedOut(f"{watch.model} was not ready after {timeout:.0f}s ({state.problem})")
        if progress is not None:
            progress.tick(state.problem or "")
        time.sleep(interval)


def _server_stopping(watch: Watch, patience: float = 3.0) -> bool:
    """Whether the server this process started goes away within ``patience`` seconds: a stopped
    TorchServe ends its workers before it exits, so a worker's death alone does not tell a crash from a
    `make stop`."""
    if watch.server_alive is None:
        return False
    deadline = time.monotonic() + patience
    while watch.server_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _server_gone(watch: Watch) -> str:
    output = watch.server_output() if watch.server_output else ""
    return (f"TorchServe stopped before {watch.model} was ready (stopped by `make stop`, or it exited)"
            + (f"; its last words:\n{_tail(output)}" if output.strip() else ""))


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _log_lines(watch: Watch, name: str) -> list[str]:
    if watch.log_dir is None:
        return []
    try:
        return (watch.log_dir / name).read_text(errors="replace").splitlines()
    except OSError:
        return []


def _registration_failure(watch: Watch) -> str | None:
    """TorchServe's exception for the model's failed registration, from the last time it logged one."""
    lines = _log_lines(watch, "ts_log.log")
    marker = f"Failed to load model: {watch.model}"
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].rstrip().endswith(marker):
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            return f"{marker}: {following}" if following else marker
    return None


def _worker_death(watch: Watch, patience: float = 3.0) -> str:
    """What the dead worker wrote to stderr last, and TorchServe's verdict (it logs both a moment after the
    process is gone, hence the short patience)."""
    deadline = time.monotonic() + patience
    while True:
        lines = _log_lines(watch, "ts_log.log")
        verdicts = [i for i, line in enumerate(lines) if f"Load model failed: {watch.model}" in line]
        if verdicts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not verdicts:
        where = watch.log_dir / "model_log.log" if watch.log_dir else "TorchServe's model log"
        return f"nothing yet; see {where}"
    verdict = lines[verdicts[-1]].split(" - ", 1)[-1].strip()
    last_words: list[str] = []
    for line in reversed(lines[:verdicts[-1]]):
        if "stderr MODEL_LOG - " in line:
            words = line.split("MODEL_LOG - ", 1)[1].strip()
            if words and words not in last_words:
                last_words.insert(0, words)
        elif "State change null -> WORKER_STARTED" in line and last_words:
            break  # the lines before belong to an earlier attempt
        if len(last_words) == 3:
            break
    return verdict + (f" (its last words on stderr: {' | '.join(last_words)})" if last_words else "")
