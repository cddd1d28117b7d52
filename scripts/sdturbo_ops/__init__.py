"""sdturbo_ops: everything that builds, runs, checks and calls sdturbo-serve, as one importable package.

``handler/`` is the service itself (it ships inside the model archive); this package is the operator's
side: the archive builder, TorchServe processes and their readiness, the container entrypoint, the
benchmark, and the AWS clients. The CLIs in ``scripts/`` are thin: arguments, progress and exit codes.

It is imported without path edits: ``python scripts/<cli>.py`` finds it beside the script (the script's
folder is ``sys.path[0]``), the project's editable install (``make install``) makes it importable
everywhere else, and the container image copies it next to its entrypoint. Modules import only the
standard library at the top, except where a module's job needs more, so the entrypoint's few
dependencies are all the image must carry.
"""
