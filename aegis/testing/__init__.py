"""aegis.testing."""
