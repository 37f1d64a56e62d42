"""aegis.remediation."""
