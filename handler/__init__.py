"""sdturbo-serve: a framework-free SD-turbo engine (settings, schema, pipeline, engine, encode) and
the thin TorchServe adapter over it (torchserve_handler)."""

# The project's version: setup.cfg reads it from here, and images carry it (handler/metadata.py).
__version__ = "0.1.0"
