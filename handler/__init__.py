"""sdturbo-serve: a framework-free SD-turbo engine (settings, schema, pipeline, engine, encode) and
the thin TorchServe adapter over it (torchserve_handler)."""
