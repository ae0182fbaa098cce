"""linewatch gateway service."""
