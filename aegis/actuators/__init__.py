"""aegis.actuators."""
