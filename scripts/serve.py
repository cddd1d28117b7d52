#!/usr/bin/env python3
"""Container entrypoint: ``docker run IMAGE serve`` runs TorchServe the way SageMaker hosting expects.

- TorchServe in the foreground on 0.0.0.0:8080 (``/ping``, ``/invocations``, ``/predictions/sdturbo``),
  with the repository's config.properties (copied into the image) and only the container's own listeners,
  model store and plugins folder overridden: management and metrics on loopback only; model API off;
  token auth off because SageMaker puts IAM in front of the endpoint and cannot send a TorchServe token.
- The model comes from ``/opt/ml/model`` (``--model-dir``): either an uncompressed archive folder
  (MAR-INF/ at its root, the S3Prefix layout) or one ``.mar`` file. Every file in it must be readable by
  the user the container runs as; the entrypoint checks that before TorchServe starts.
- Its own environment variables are ``SDSERVE_*`` (``SDSERVE_PLUGINS_DIR``, ``SDSERVE_LOG_DIR``; it sets
  ``SDSERVE_STATE_DIR`` for the workers and the plugin); an unknown ``SDSERVE_*`` is refused.
- CloudWatch metrics: it writes embedded-metric-format records on its stdout, which SageMaker sends to the
  endpoint's log group (sdturbo_ops/emf.py); ``SDSERVE_METRICS=off`` turns them off, and
  ``SDSERVE_METRICS_ENDPOINT``/``_MODEL``/``_INSTANCE_TYPE`` (the stack sets them) name their dimensions.
  ``SDTURBO_<FIELD>`` variables belong to the engine (handler/settings.py), which refuses unknown ones.
- SageMaker's environment variables (``SAGEMAKER_TS_BATCH_SIZE``, ``SAGEMAKER_TS_MAX_BATCH_DELAY``,
  ``SAGEMAKER_TS_MIN_WORKERS``/``MAX_WORKERS``, ``SAGEMAKER_MODEL_SERVER_WORKERS``,
  ``SAGEMAKER_TS_RESPONSE_TIMEOUT``/``SAGEMAKER_MODEL_SERVER_TIMEOUT``) become TorchServe model settings.
- ``/ping`` is answered by plugins/readiness: non-200 until a worker has loaded and warmed up, and when
  the model cannot load. On SIGTERM the entrypoint marks itself draining (``/ping`` turns 503), waits for
  queued and running requests to finish (at most ``--drain-seconds``, inside SageMaker's 30 s), stops
  TorchServe and exits 0. Its temporary folder (an unpacked .mar, TorchServe's own files) goes with it.

Exit codes: 0 clean shutdown, 2 bad usage or configuration, 3 no model found, 4 model data not readable,
other: TorchServe's own.
"""

from __future__ import annotations

import argparse
import os
import zipfile

from sdturbo_ops import cli
from sdturbo_ops.local_torchserve import SocketPathTooLong
from sdturbo_ops.serve import (
    LOG_DIR_ENV, PLUGINS_DIR_ENV, ConfigError, Listeners, check_own_environment, model_settings, serve,
    unreadable_entry, unreadable_message,
)
from sdturbo_ops.paths import PLUGIN_JAR, PLUGINS_DIR

EXIT_NO_MODEL, EXIT_MODEL_UNREADABLE = 3, 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env, listen = os.environ, Listeners()
    parser = argparse.ArgumentParser(prog="serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"],
                        help="SageMaker passes 'serve' (the default)")
    parser.add_argument("--model-dir", type=cli.absolute_path, default="/opt/ml/model",
                        help="model data folder (default: /opt/ml/model, where SageMaker puts it)")
    parser.add_argument("--host", default=listen.host, help="inference bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(env.get("SAGEMAKER_BIND_TO_PORT", listen.port)),
                        help=f"inference port (default: $SAGEMAKER_BIND_TO_PORT or {listen.port})")
    parser.add_argument("--management-port", type=int, default=listen.management_port,
                        help="loopback management port (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=listen.metrics_port,
                        help="loopback metrics port (default: %(default)s)")
    parser.add_argument("--grpc-ports", type=int, nargs=2, default=listen.grpc_ports, metavar=("INFERENCE", "MANAGEMENT"),
                        help="loopback gRPC ports (TorchServe always opens them; default: %(default)s)")
    parser.add_argument("--plugins-dir", type=cli.absolute_path, default=env.get(PLUGINS_DIR_ENV, str(PLUGINS_DIR)),
                        help=f"folder holding readiness-ping.jar (default: ${PLUGINS_DIR_ENV} or build/plugins)")
    parser.add_argument("--log-dir", type=cli.absolute_path, default=env.get(LOG_DIR_ENV, "/tmp/sdturbo-logs"),
                        help=f"TorchServe log folder (default: ${LOG_DIR_ENV} or /tmp/sdturbo-logs; "
                             "it also logs to stdout)")
    parser.add_argument("--drain-seconds", type=float, default=25.0,
                        help="longest wait for in-flight requests after SIGTERM (default: 25)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_own_environment(dict(os.environ))  # first: a misspelt SDSERVE_PLUGINS_DIR explains the next check
        settings = model_settings(dict(os.environ))
    except ConfigError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    if not (args.plugins_dir / PLUGIN_JAR.name).is_file():
        raise cli.CliError(f"{args.plugins_dir / PLUGIN_JAR.name} is missing; build it with `make plugin`",
                           cli.EXIT_USAGE)
    if not args.model_dir.is_dir():
        raise cli.CliError(f"{args.model_dir} does not exist: mount the model data there (SageMaker does)",
                           EXIT_NO_MODEL)
    unreadable = unreadable_entry(args.model_dir)
    if unreadable is not None:
        raise cli.CliError(unreadable_message(args.model_dir, unreadable), EXIT_MODEL_UNREADABLE)
    listeners = Listeners(args.host, args.port, args.management_port, args.metrics_port, tuple(args.grpc_ports))
    try:
        return serve(args.model_dir, listeners, args.plugins_dir, args.log_dir, args.drain_seconds, settings)
    except (FileNotFoundError, zipfile.BadZipFile) as exc:
        raise cli.CliError(str(exc), EXIT_NO_MODEL) from None
    except SocketPathTooLong as exc:  # TMPDIR too deep for TorchServe's worker sockets
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None


if __name__ == "__main__":
    cli.run(main)
