"""The table of services (``services.toml`` at the repository root), typed.

One place names the services, their packages, ports and dependency sets; the launcher,
the image build and the deploy tests read it through :func:`load`.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TABLE", "Service", "load"]

TABLE = Path(__file__).resolve().parents[2] / "services.toml"


@dataclass(frozen=True)
class Service:
    """One row of the table."""

    name: str
    package: str
    requirements: str
    grpc_port: int | None = None
    http_port: int | None = None
    models: bool = False
    calls: tuple[str, ...] = ()
    #: Services it calls that start after it (a cycle broken by retrying while they're down).
    calls_later: tuple[str, ...] = ()

    @property
    def clients_of(self) -> tuple[str, ...]:
        """Every service it calls, ``calls`` then ``calls_later``."""
        return (*self.calls, *self.calls_later)

    @property
    def port(self) -> int:
        """The port it listens on: gRPC, else HTTP."""
        port = self.grpc_port if self.grpc_port is not None else self.http_port
        if port is None:
            raise ValueError(f"service {self.name} has neither grpc_port nor http_port")
        return port

    @property
    def protocol(self) -> str:
        """``grpc`` or ``http``: what its health check speaks."""
        return "grpc" if self.grpc_port is not None else "http"


_KEYS = {"package", "requirements", "grpc_port", "http_port", "models", "calls", "calls_later"}


def load(path: Path = TABLE) -> list[Service]:
    """Every service, in start order (each after the services it calls).

    Raises:
        ValueError: the table has an unknown key, a port out of range, or a service that
            calls one not listed before it, or ``calls_later`` one not listed after it.
    """
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    out: list[Service] = []
    for name, row in raw.items():
        if not isinstance(row, dict) or not row.keys() <= _KEYS:
            raise ValueError(f"{path}: [{name}]: unknown keys {sorted(set(row) - _KEYS)}")
        svc = Service(
            name=name,
            **{
                **row,
                "calls": tuple(row.get("calls", ())),
                "calls_later": tuple(row.get("calls_later", ())),
            },
        )
        if not 0 < svc.port < 65536:
            raise ValueError(f"{path}: [{name}]: port {svc.port} is out of range")
        missing = [c for c in svc.calls if c not in {s.name for s in out}]
        if missing:
            raise ValueError(f"{path}: [{name}] calls {missing}, not listed before it")
        out.append(svc)
    names = {s.name for s in out}
    for svc in out:
        before = {s.name for s in out[: out.index(svc)]}
        wrong = [c for c in svc.calls_later if c not in names or c in before or c == svc.name]
        if wrong:
            raise ValueError(
                f"{path}: [{svc.name}] calls_later {wrong}: must be services listed after it"
            )
    return out


def main(argv: list[str]) -> int:
    """``services.py``: the names, in start order; ``services.py NAME``: one row as
    ``key=value`` lines (for scripts/build-images.sh, which runs this file with python3)."""
    services = {s.name: s for s in load()}
    if not argv:
        print(" ".join(services))
        return 0
    svc = services.get(argv[0])
    if svc is None:
        print(f"unknown service {argv[0]!r}; the table has: {' '.join(services)}", file=sys.stderr)
        return 1
    print(f"package={svc.package}")
    print(f"port={svc.port}")
    print(f"protocol={svc.protocol}")
    print(f"requirements={svc.requirements}")
    print(f"models={'true' if svc.models else 'false'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
