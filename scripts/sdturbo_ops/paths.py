"""Where things are, for a checkout (editable install) and for the image (/opt/sdturbo), alike.

The package sits at ``<root>/scripts/sdturbo_ops`` in both: the image copies it there with
``config.properties`` beside ``scripts/``, so the same relative paths hold.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The repository's TorchServe settings; every server this package starts derives its own from it.
CONFIG_PROPERTIES = ROOT / "config.properties"
HANDLER_DIR = ROOT / "handler"
MODEL_CONFIG = HANDLER_DIR / "model-config.yaml"
PLUGINS_DIR = ROOT / "build" / "plugins"
PLUGIN_JAR = PLUGINS_DIR / "readiness-ping.jar"
TINY_SD = ROOT / "build" / "models" / "sd-turbo-tiny"
# The model's name in URLs (/predictions/sdturbo) and in the archive (model-store/sdturbo).
MODEL_NAME = "sdturbo"
# Where `make serve` keeps the running server's logs and its workers' state files.
LOG_DIR = ROOT / "logs"
SERVE_STATE_DIR = ROOT / "build" / "serve-state"
