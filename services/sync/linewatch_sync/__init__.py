"""linewatch sync service."""
