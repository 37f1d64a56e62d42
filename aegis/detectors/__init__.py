"""aegis.detectors."""
