"""aegis.lang."""
