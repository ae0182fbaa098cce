"""Validate rendered objects against the Kubernetes JSON schemas (strict), and the
invariants this chart promises: hardened pods with probes and resources."""

from __future__ import annotations

from typing import Any

from tools.chart_check.render import KUBE_VERSION

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def schema_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Every object checked against the Kubernetes schemas in strict mode (no unknown keys)."""
    import kubernetes_validate  # type: ignore[import-not-found]

    errors: list[str] = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.caught.absolute_path)
            errors.append(f"{_name(obj)}: {path}: {exc.caught.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{_name(obj)}: no schema for it in Kubernetes {KUBE_VERSION} ({exc})")
    return errors


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec inside a workload object, or ``None`` for other kinds."""
    kind = obj.get("kind")
    if kind not in WORKLOADS:
        return None
    if kind == "Pod":
        spec: dict[str, Any] = obj["spec"]
        return spec
    template: dict[str, Any] = obj["spec"]["template"]["spec"]
    return template


def _container_errors(where: str, container: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    sc = container.get("securityContext") or {}
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        errors.append(f"{where}: runAsNonRoot is not set")
    if sc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{where}: allowPrivilegeEscalation is not false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        errors.append(f"{where}: capabilities do not drop ALL")
    seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    if seccomp.get("type") != "RuntimeDefault":
        errors.append(f"{where}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources") or {}
    errors.extend(
        f"{where}: no {part}.{res}"
        for part in ("requests", "limits")
        for res in ("cpu", "memory")
        if res not in (resources.get(part) or {})
    )
    errors.extend(
        f"{where}: no {probe}"
        for probe in ("readinessProbe", "livenessProbe")
        if probe not in container
    )
    return errors


def hardening_errors(objects: list[dict[str, Any]]) -> list[str]:
    """Each container: non-root, read-only root fs, no capabilities, seccomp, resources,
    and readiness and liveness probes; no service account token in any pod."""
    errors: list[str] = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{_name(obj)}: automountServiceAccountToken is not false")
        pod_sc = spec.get("securityContext") or {}
        for container in spec.get("containers", []):
            where = f"{_name(obj)} container {container.get('name')}"
            errors.extend(_container_errors(where, container, pod_sc))
    return errors
