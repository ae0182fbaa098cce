"""linewatch ingest service."""
