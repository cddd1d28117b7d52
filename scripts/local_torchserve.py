#!/usr/bin/env python3
"""Start TorchServe in the background with this repository's config.properties, and wait until it serves.

What `make serve`, `make serve-tiny` and `make demo` run. The server keeps config.properties' loopback
ports, gets the /ping readiness plugin (build/plugins) and a state folder its workers report to, and
writes its output to the log folder instead of the terminal. Stop it with `make stop` (``stop`` here,
TorchServe's own ``torchserve --stop``), which finds it through TorchServe's pid file.

  local_torchserve.py start --store model-store          # the archive `make mar` built
  local_torchserve.py start --store build/demo-store     # the offline tiny model (`make serve-tiny`)
  local_torchserve.py start --store build/demo-store --port 8090   # a second server beside the first
  local_torchserve.py stop --port 8090                   # stops that one (`make stop PORT=8090`)

A second server needs ports, a state folder and a TMPDIR of its own: --port N gives it all of them, its
listeners on N to N+4 (inference, management, metrics, gRPC inference, gRPC management) and its TMPDIR,
properties, logs and state in build/servers/N/. A start that would share any of these with a running
server is refused before it changes anything: a TorchServe already running with this TMPDIR, a state
folder a running server uses, a port something listens on.

It also fails fast, with the reason, when the store holds no archive, when the model fails to load or its
worker dies (it then stops the server it started), or when TorchServe itself exits. A server still
loading at --timeout is left running.

Exit codes: 0 ready (stop: stopped, or none was running), 1 the model will not become ready (or
TorchServe stopped), 2 bad usage, 3 timed out, 4 no archive in the store, 5 a running server already
uses this TMPDIR or state folder, 6 a port the server needs is in use.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.archive import find_archive
from sdturbo_ops.local_torchserve import (
    DEFAULT_PLACE, Place, SocketPathTooLong, busy_listeners, pid_file, place_on_port, running_background_server,
    start_background, state_folder_user, stop_background, torchserve_stop,
)
from sdturbo_ops.paths import MODEL_NAME, MODEL_STORE, PLUGIN_JAR, PLUGINS_DIR
from sdturbo_ops.torchserve_config import listeners, moved, write_properties
from sdturbo_ops.wait_ready import NotReady, TimedOut, wait_ready

EXIT_FAILED, EXIT_TIMEOUT, EXIT_NO_ARCHIVE, EXIT_RUNNING, EXIT_PORT_IN_USE = 1, 3, 4, 5, 6
# What a second server needs, said wherever a start is refused for sharing something with a running one.
SECOND_SERVER = ("to run a second server beside it, give it ports and folders of its own: "
                 "`make serve-tiny PORT=8090` (or serve; --port 8090 here)")


def port_range(value: str) -> int:
    port = int(value)
    if not 1024 <= port <= 65535 - 4:
        raise argparse.ArgumentTypeError(f"{port}: the first of five ports, from 1024 to {65535 - 4}")
    return port


def place_of(args: argparse.Namespace) -> Place:
    """The server's properties and folders: --port's own, or config.properties' (--ts-config) with the
    default folders; --log-dir and --state-dir override either."""
    place = DEFAULT_PLACE if args.port is None else place_on_port(args.port)
    if args.port is None and args.ts_config is not None:
        place = Place(args.ts_config, place.log_dir, place.state_dir, place.tmp_dir)
    return Place(place.config, args.log_dir or place.log_dir, args.state_dir or place.state_dir, place.tmp_dir)


def stop_with(args: argparse.Namespace) -> str:
    return "`make stop`" if args.port is None else f"`make stop PORT={args.port}`"


def refuse_what_is_in_use(args: argparse.Namespace, place: Place, source) -> list:
    """Refuse, before anything changes, a start that would share a TMPDIR, state folder or port with a
    running server; returns the listeners the server will open."""
    running = running_background_server(place.tmp_dir)
    if running is not None:
        raise cli.CliError(
            f"a TorchServe is already running (pid {running}, found through {pid_file(place.tmp_dir)}); stop "
            f"it with {stop_with(args)} (torchserve --stop) first, or {SECOND_SERVER}", EXIT_RUNNING)
    user = state_folder_user(place.state_dir)
    if user is not None:
        raise cli.CliError(
            f"{place.state_dir} is the state folder of a running TorchServe (pid {user}), which this start would "
            f"empty; {SECOND_SERVER}", EXIT_RUNNING)
    wanted = listeners(source) if args.port is None else moved(listeners(source), args.port)
    busy = busy_listeners(wanted)
    if busy:
        named = ", ".join(f"{listener.port} ({listener.key})" for listener in busy)
        raise cli.CliError(f"something already listens on port {named}: is another TorchServe running? "
                           f"{SECOND_SERVER[0].upper()}{SECOND_SERVER[1:]}", EXIT_PORT_IN_USE)
    return wanted


def start(args: argparse.Namespace) -> int:
    archive = find_archive(args.store, args.name)
    if archive is None:
        raise cli.CliError(
            f"{args.store} holds no {args.name} archive: build the real model's with `make model && make mar`, "
            "or serve the offline tiny model with `make serve-tiny`", EXIT_NO_ARCHIVE)
    if not (args.plugins / PLUGIN_JAR.name).is_file():
        raise cli.CliError(f"{args.plugins / PLUGIN_JAR.name} is missing: build the /ping plugin with "
                           "`make plugin`", cli.EXIT_USAGE)
    place = place_of(args)
    source = args.ts_config or DEFAULT_PLACE.config
    wanted = refuse_what_is_in_use(args, place, source)
    if args.port is not None:
        place.config.parent.mkdir(parents=True, exist_ok=True)
        write_properties(place.config, dict(listener.setting for listener in wanted), source,
                         why=f"a server of its own on ports {args.port}-{args.port + 4} (--port)")
    try:
        watch = start_background(args.store, f"{args.name}={archive.name}", place, args.plugins)
    except SocketPathTooLong as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    except RuntimeError as exc:
        raise cli.CliError(f"TorchServe did not start: {exc}", EXIT_FAILED) from None
    url = dict(listener.setting for listener in wanted)["inference_address"]
    print(f"TorchServe started with {archive} on {url}; its logs are in {place.log_dir}/", flush=True)
    try:
        seconds = wait_ready(watch, args.timeout, cli.Progress(f"waiting for {args.name} to load and warm up"))
    except TimedOut as exc:
        raise cli.CliError(f"{exc}; it is still running: {stop_with(args)} stops it", EXIT_TIMEOUT) from None
    except NotReady as exc:
        stop_background(place.tmp_dir)  # it would serve nothing, and block the next start
        raise cli.CliError(f"{exc}\n(TorchServe was stopped; its logs are in {place.log_dir}/)", EXIT_FAILED) from None
    beside = "" if args.port is None else f" on {url} (`make predict PORT={args.port}`, {stop_with(args)})"
    print(f"{args.name} is ready after {seconds:.1f}s{beside}")
    return 0


def stop(args: argparse.Namespace) -> int:
    return torchserve_stop(None if args.port is None else place_on_port(args.port).tmp_dir).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    port_help = ("a server of its own: listeners on PORT to PORT+4, TMPDIR, properties, logs and state in "
                 "build/servers/PORT/ (default: config.properties' ports, the folders below, this TMPDIR)")
    begin = commands.add_parser("start", help="start TorchServe in the background and wait until it is ready")
    begin.add_argument("--store", type=cli.absolute_path, default=MODEL_STORE,
                       help="model store holding the archive (default: model-store, where `make mar` writes)")
    begin.add_argument("--name", default=MODEL_NAME, help="model (archive) name (default: %(default)s)")
    begin.add_argument("--port", type=port_range, help=port_help)
    begin.add_argument("--ts-config", type=cli.absolute_path,
                       help="TorchServe properties (default: the repository's config.properties; with --port, the "
                            "file its listeners are moved from)")
    begin.add_argument("--plugins", type=cli.absolute_path, default=PLUGINS_DIR,
                       help="folder holding readiness-ping.jar (default: build/plugins)")
    begin.add_argument("--log-dir", type=cli.absolute_path,
                       help="TorchServe's logs and output (default: logs, or build/servers/PORT/logs)")
    begin.add_argument("--state-dir", type=cli.absolute_path,
                       help="the workers' state folder, emptied at start (default: build/serve-state, or "
                            "build/servers/PORT/state)")
    begin.add_argument("--timeout", type=float, default=900, help="seconds to wait for ready (default: %(default)s)")
    begin.set_defaults(run=start)
    end = commands.add_parser("stop", help="stop the server started here (TorchServe's own --stop)")
    end.add_argument("--port", type=port_range, help="the server started with --port PORT (default: the one on "
                                                     "config.properties' ports, found through this TMPDIR)")
    end.set_defaults(run=stop)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    cli.run(main)
