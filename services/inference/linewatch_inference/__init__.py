"""linewatch inference service."""
