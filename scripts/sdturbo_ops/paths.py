"""Where things are, for a checkout (editable install) and for the image (/opt/sdturbo), alike.

The package sits at ``<root>/scripts/sdturbo_ops`` in both: the image copies it there with
``config.properties`` beside ``scripts/``, so the same relative paths hold.

This is the one home of these paths: the Makefile reads the ones it needs from
``python3 scripts/sdturbo_ops/paths.py --make`` (standard library only, so it runs before the install).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The repository's TorchServe settings; every server this package starts derives its own from it.
CONFIG_PROPERTIES = ROOT / "config.properties"
HANDLER_DIR = ROOT / "handler"
MODEL_CONFIG = HANDLER_DIR / "model-config.yaml"
# Each model's sizing for the production GPU, read by the archive builder and the SageMaker stack alike.
PROFILES = HANDLER_DIR / "profiles.yaml"
PLUGINS_DIR = ROOT / "build" / "plugins"
PLUGIN_JAR = PLUGINS_DIR / "readiness-ping.jar"
# The playground page (GET /playground) of the local server; the container image does not carry it.
PLAYGROUND_JAR = PLUGINS_DIR / "playground.jar"
TINY_SD = ROOT / "build" / "models" / "sd-turbo-tiny"
TINY_SDXL = ROOT / "build" / "models" / "sdxl-turbo-tiny"
# The store `make mar` writes and `make serve` serves; the tiny model's, which `make serve-tiny` serves.
MODEL_STORE = ROOT / "model-store"
DEMO_STORE = ROOT / "build" / "demo-store"
# The model's name in URLs (/predictions/sdturbo) and in the archive (model-store/sdturbo).
MODEL_NAME = "sdturbo"
# Where `make serve` keeps the running server's logs and its workers' state files.
LOG_DIR = ROOT / "logs"
SERVE_STATE_DIR = ROOT / "build" / "serve-state"
# A server started on a port of its own (`make serve-tiny PORT=8090`) keeps its TMPDIR, properties, logs and
# state in SERVERS_DIR/<port>/, so that nothing of it is shared with the server on config.properties' ports.
SERVERS_DIR = ROOT / "build" / "servers"

# The file TorchServe reads first in the tiny model's archive: `make serve-tiny` rebuilds the archive only
# when it is older than what goes into it, never under a server that serves it unless that changed.
DEMO_MANIFEST = DEMO_STORE / MODEL_NAME / "MAR-INF" / "MANIFEST.json"

# What the Makefile takes from here, by the name it uses.
MAKE_VARIABLES = {"TINY_SD": TINY_SD, "TINY_SDXL": TINY_SDXL, "DEMO_STORE": DEMO_STORE, "PLUGIN_JAR": PLUGIN_JAR,
                  "PLAYGROUND_JAR": PLAYGROUND_JAR, "DEFAULT_MODEL_STORE": MODEL_STORE, "DEMO_MANIFEST": DEMO_MANIFEST}


if __name__ == "__main__":
    if sys.argv[1:] != ["--make"]:
        sys.exit("usage: paths.py --make   (prints NAME:=path lines, relative to the checkout, for the Makefile)")
    print("\n".join(f"{name}:={path.relative_to(ROOT)}" for name, path in MAKE_VARIABLES.items()))
