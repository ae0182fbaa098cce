"""Who made a registry change: the authenticated gRPC caller's name (recorded as
``loaded_by`` and a promotion's ``by``)."""

from __future__ import annotations

from linewatch.runtime.grpc_auth import current_caller

__all__ = ["caller_name"]


def caller_name() -> str:
    """The name of the caller of the gRPC call being served (``""`` with auth off)."""
    caller = current_caller()
    return caller.name if caller is not None else ""
