"""The built-in executor policy set (``*.aegis`` files) used when no ``--policies`` is given."""
