"""linewatch ota service."""
