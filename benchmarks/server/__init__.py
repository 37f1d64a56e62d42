"""Load benchmark of the server: ``python -m benchmarks.server.load`` (see ``load.py``)."""
