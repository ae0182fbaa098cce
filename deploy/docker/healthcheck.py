"""Container health check used by the images' HEALTHCHECK and the CI image smoke test.

    python /app/healthcheck.py grpc 50051      # grpc.health.v1 Check("") == SERVING
    python /app/healthcheck.py http 8080 /healthz
    python /app/healthcheck.py                 # the image's own: $LINEWATCH_HEALTHCHECK

Exit status 0 when healthy, 1 otherwise (the reason on stderr). Standard library plus
grpcio (already in every gRPC service image).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def check_grpc(port: int, timeout: float) -> str | None:
    """None when the server reports SERVING, else the reason."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"grpc health on port {port}: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"grpc health on port {port}: status {reply.status}"
    return None


def check_http(port: int, path: str, timeout: float) -> str | None:
    """None when GET http://127.0.0.1:<port><path> answers 200, else the reason."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except OSError as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    """Parse ``grpc PORT`` or ``http PORT [PATH]`` and run the check.

    Without arguments, they come from ``LINEWATCH_HEALTHCHECK`` (set by the Dockerfile).
    """
    if not argv:
        argv = os.environ.get("LINEWATCH_HEALTHCHECK", "").split()
    if len(argv) < 2 or argv[0] not in {"grpc", "http"} or not argv[1].isdigit():
        print("usage: healthcheck.py grpc PORT | http PORT [PATH]", file=sys.stderr)
        return 2
    port = int(argv[1])
    if argv[0] == "grpc":
        problem = check_grpc(port, timeout=3.0)
    else:
        problem = check_http(port, argv[2] if len(argv) > 2 else "/healthz", timeout=3.0)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
