"""The inference schema's migration history (revisions in ``migrations/``): the registry."""

from linewatch_inference.catalog import HISTORY

__all__ = ["HISTORY"]
