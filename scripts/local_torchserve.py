#!/usr/bin/env python3
"""Start TorchServe in the background with this repository's config.properties, and wait until it serves.

What `make serve`, `make serve-tiny` and `make demo` run. The server keeps config.properties' loopback
ports, gets the /ping readiness plugin (build/plugins) and a state folder its workers report to, and
writes its output to the log folder instead of the terminal. Stop it with `make stop`
(``torchserve --stop``), which finds it through TorchServe's own pid file.

  local_torchserve.py start --store model-store          # the archive `make mar` built
  local_torchserve.py start --store build/demo-store     # the offline tiny model (`make serve-tiny`)

It fails fast, with the reason, when the store holds no archive, when a TorchServe is already running,
when the model fails to load or its worker dies (it then stops the server it started), or when
TorchServe itself exits. A server still loading at --timeout is left running.

Exit codes: 0 ready, 1 the model will not become ready (or TorchServe stopped), 2 bad usage,
3 timed out, 4 no archive in the store, 5 a TorchServe is already running.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.archive import find_archive
from sdturbo_ops.paths import (
    CONFIG_PROPERTIES, LOG_DIR, MODEL_NAME, MODEL_STORE, PLUGIN_JAR, PLUGINS_DIR, SERVE_STATE_DIR,
)
from sdturbo_ops.local_torchserve import pid_file, running_background_server, start_background, stop_background
from sdturbo_ops.wait_ready import NotReady, TimedOut, wait_ready

EXIT_FAILED, EXIT_TIMEOUT, EXIT_NO_ARCHIVE, EXIT_RUNNING = 1, 3, 4, 5


def start(args: argparse.Namespace) -> int:
    archive = find_archive(args.store, args.name)
    if archive is None:
        raise cli.CliError(
            f"{args.store} holds no {args.name} archive: build the real model's with `make model && make mar`, "
            "or serve the offline tiny model with `make serve-tiny`", EXIT_NO_ARCHIVE)
    running = running_background_server()
    if running is not None:
        raise cli.CliError(
            f"a TorchServe is already running (pid {running}, found through {pid_file()}); stop it with "
            "`make stop` (torchserve --stop) first. TorchServe keeps one background server per TMPDIR: to run "
            "a second one beside it, give it a TMPDIR of its own and other ports (--ts-config)", EXIT_RUNNING)
    if not (args.plugins / PLUGIN_JAR.name).is_file():
        raise cli.CliError(f"{args.plugins / PLUGIN_JAR.name} is missing: build the /ping plugin with "
                           "`make plugin`", cli.EXIT_USAGE)
    try:
        watch = start_background(args.store, f"{args.name}={archive.name}", args.log_dir, args.state_dir,
                                 args.ts_config, args.plugins)
    except RuntimeError as exc:
        raise cli.CliError(f"TorchServe did not start: {exc}", EXIT_FAILED) from None
    print(f"TorchServe started with {archive}; its logs are in {args.log_dir}/", flush=True)
    try:
        seconds = wait_ready(watch, args.timeout, cli.Progress(f"waiting for {args.name} to load and warm up"))
    except TimedOut as exc:
        raise cli.CliError(f"{exc}; it is still running: `make stop` stops it", EXIT_TIMEOUT) from None
    except NotReady as exc:
        stop_background()  # it would serve nothing, and block the next start
        raise cli.CliError(f"{exc}\n(TorchServe was stopped; its logs are in {args.log_dir}/)", EXIT_FAILED) from None
    print(f"{args.name} is ready after {seconds:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start TorchServe in the background and wait until it is ready")
    begin.add_argument("--store", type=cli.absolute_path, default=MODEL_STORE,
                       help="model store holding the archive (default: model-store, where `make mar` writes)")
    begin.add_argument("--name", default=MODEL_NAME, help="model (archive) name (default: %(default)s)")
    begin.add_argument("--ts-config", type=cli.absolute_path, default=CONFIG_PROPERTIES,
                       help="TorchServe properties (default: the repository's config.properties)")
    begin.add_argument("--plugins", type=cli.absolute_path, default=PLUGINS_DIR,
                       help="folder holding readiness-ping.jar (default: build/plugins)")
    begin.add_argument("--log-dir", type=cli.absolute_path, default=LOG_DIR,
                       help="TorchServe's logs and output (default: logs)")
    begin.add_argument("--state-dir", type=cli.absolute_path, default=SERVE_STATE_DIR,
                       help="the workers' state folder, emptied at start (default: build/serve-state)")
    begin.add_argument("--timeout", type=float, default=900, help="seconds to wait for ready (default: %(default)s)")
    begin.set_defaults(run=start)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    cli.run(main)
