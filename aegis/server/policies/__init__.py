"""The system route-authorization policy set of the server (``*.aegis`` files)."""
