"""aegis.engine."""
