"""TorchServe's management API, as this project reads it (it listens on loopback only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from sdturbo_ops.paths import MODEL_NAME


def model_description(management_url: str, model: str = MODEL_NAME) -> tuple[int, list[dict]]:
    """(HTTP status, description) of ``model``; (0, []) while the API does not answer."""
    try:
        with urllib.request.urlopen(f"{management_url}/models/{model}", timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, []
    except (OSError, ValueError):
        return 0, []


def model_workers(management_url: str, model: str = MODEL_NAME) -> list[dict]:
    """The model's workers (id, pid, status, ...); [] while the API does not answer."""
    return [w for m in model_description(management_url, model)[1] for w in m.get("workers", [])]


def pending_requests(management_url: str, model: str = MODEL_NAME) -> int:
    """Requests queued for ``model`` and not yet handed to a worker; 0 when the API is gone."""
    _, description = model_description(management_url, model)
    return sum(m.get("jobQueueStatus", {}).get("pendingRequests", 0) for m in description)
