#!/usr/bin/env python3
"""Wait until a TorchServe started with our handler has loaded and warmed up the model; fail fast if it won't.

Ready is what the workers' state files say (``$SDSERVE_STATE_DIR``, which `make serve` sets; the /ping
plugin reads the same files). The wait ends early, with TorchServe's own reason from its log, when the
model is not registered (no archive in the model store: ``ModelNotFoundException``), when its worker
process dies while loading, or when the handler reports that the model failed to load.

  wait_ready.py --state-dir build/serve-state --log-dir logs --timeout 900

Exit codes: 0 ready, 1 the model will not become ready (the reason is printed), 2 bad usage, 3 timed out.
"""

from __future__ import annotations

import argparse
import os

from sdturbo_ops import cli
from sdturbo_ops.paths import LOG_DIR, MODEL_NAME, SERVE_STATE_DIR
from sdturbo_ops.readiness import STATE_DIR_ENV
from sdturbo_ops.torchserve_config import management_address
from sdturbo_ops.wait_ready import NotReady, TimedOut, Watch, wait_ready

EXIT_FAILED, EXIT_TIMEOUT = 1, 3


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--management-url", default=management_address(),
                        help="management API (default: config.properties' management_address, %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="model name (default: %(default)s)")
    parser.add_argument("--state-dir", type=cli.absolute_path, default=env.get(STATE_DIR_ENV) or str(SERVE_STATE_DIR),
                        help=f"the workers' state folder (default: ${STATE_DIR_ENV} or build/serve-state)")
    parser.add_argument("--log-dir", type=cli.absolute_path, default=env.get("LOG_LOCATION") or str(LOG_DIR),
                        help="TorchServe's log folder, for its reasons (default: $LOG_LOCATION or logs)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.state_dir.is_dir():
        raise cli.CliError(f"{args.state_dir} does not exist: start TorchServe with {STATE_DIR_ENV} pointing "
                           "at a folder (`make serve` does) so its workers can say when they are ready",
                           cli.EXIT_USAGE)
    watch = Watch(args.state_dir, args.management_url, args.model, args.log_dir)
    try:
        seconds = wait_ready(watch, args.timeout, cli.Progress(f"waiting for {args.model} to load and warm up"))
    except TimedOut as exc:
        raise cli.CliError(str(exc), EXIT_TIMEOUT) from None
    except NotReady as exc:
        raise cli.CliError(str(exc), EXIT_FAILED) from None
    print(f"{args.model} is ready ({seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    cli.run(main)
