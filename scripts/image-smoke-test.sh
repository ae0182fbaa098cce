#!/usr/bin/env bash
# CI image smoke test: build every service image with podman/buildah and check that each
# holds no dev or test tooling (linewatch_dev, pytest, hypothesis are not importable, no
# dev/ folder), starts, and answers its health check (grpc.health.v1 for the four gRPC
# services, HTTP /healthz for the gateway).
#
# Image registries are unreachable here, so the base image is a stand-in: a
# `debootstrap --variant=minbase` of Debian bookworm with python3 + venv, imported and
# tagged locally (cached under .ci-cache/ by a hash of its recipe) and passed as the
# BASE_IMAGE build arg. pip inside the build reaches PyPI with the host's CA bundle.
# Skips (exit 0, with a message) only where podman cannot be installed.
#
#   scripts/image-smoke-test.sh [SERVICE...]     (default: every service in services.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

services=("$@")
# shellcheck disable=SC2207 # the names are single words
[ ${#services[@]} -gt 0 ] || services=($(python3 dev/linewatch_dev/services.py))
t0=$(date +%s)
log() { echo "[smoke $(( $(date +%s) - t0 ))s] $*"; }

# --- tools ------------------------------------------------------------------------
need=()
for tool in podman buildah debootstrap runc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (Debian packages)"
  if ! { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
         && apt-get update -qq >/dev/null \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null; }; then
    echo "SKIPPED: image smoke test: podman/buildah/debootstrap cannot be installed on this machine (need root and apt-get)."
    exit 0
  fi
fi

# --- the stand-in base image (cached) ------------------------------------------------
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,ca-certificates
key=$(printf '%s\n' "v1" "$suite" "minbase" "$packages" | sha256sum | cut -c1-16)
base="localhost/linewatch-ci-base:$key"
cache=".ci-cache/base-$key.tar"
mkdir -p .ci-cache
if ! podman image exists "$base"; then
  if [ ! -f "$cache" ]; then
    log "debootstrap $suite (minbase + $packages) -> $cache"
    rootfs=$(mktemp -d /tmp/linewatch-rootfs.XXXXXX)
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$cache.tmp" .
    mv "$cache.tmp" "$cache"
    rm -rf "$rootfs"
  fi
  log "importing $cache as $base"
  podman import --quiet "$cache" "$base" >/dev/null
fi

# --- build ----------------------------------------------------------------------------
ca=/etc/ssl/certs/ca-certificates.crt
pipconf=$(mktemp /tmp/linewatch-pip.XXXXXX.conf)
mosq_pid=""
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  [ -n "$mosq_pid" ] && kill "$mosq_pid" 2>/dev/null || true
  rm -f "$pipconf"
}
trap cleanup EXIT
printf '[global]\ncert = %s\n' "$ca" > "$pipconf"
tag=smoke
BASE_IMAGE="$base" TAG="$tag" ENGINE=podman \
  BUILD_FLAGS="--isolation chroot --volume $ca:$ca:ro --volume $pipconf:/etc/pip.conf:ro" \
  scripts/build-images.sh "${services[@]}" 2>&1 | grep -E '^(==|Error|error|ERROR)|STEP [0-9]+/[0-9]+: RUN' || true
for svc in "${services[@]}"; do
  podman image exists "linewatch-$svc:$tag" || { echo "FAILED: image linewatch-$svc:$tag was not built"; exit 1; }
done
log "built ${#services[@]} images"

run_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
           --network host --read-only --tmpfs /tmp --cap-drop ALL
           --security-opt no-new-privileges --health-cmd none)

# --- no dev or test tooling in any image ----------------------------------------------
dev_check='import importlib.util as u, pathlib, sys
found = [m for m in ("linewatch_dev", "pytest", "hypothesis", "onnx") if u.find_spec(m)]
found += [str(p) for p in (pathlib.Path("/app/dev"), pathlib.Path("/app/tests")) if p.exists()]
found += [str(p) for p in pathlib.Path("/app").rglob("testing.py")]
if found:
    sys.exit("dev tooling in the image: " + " ".join(found))'
for svc in "${services[@]}"; do
  rc=0
  podman run --rm "${run_flags[@]}" --entrypoint python "linewatch-$svc:$tag" -c "$dev_check" || rc=$?
  case $rc in
    0) ;;
    1) echo "FAILED: image linewatch-$svc:$tag carries dev or test tooling"; exit 1 ;;
    *) echo "FAILED: cannot run linewatch-$svc:$tag (podman exit $rc)"; exit 1 ;;
  esac
done
log "no linewatch_dev, pytest, hypothesis or onnx in any image"


# --- run and check health ---------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mqtt_port=$(free_port)
if command -v mosquitto >/dev/null 2>&1; then
  mosquitto -p "$mqtt_port" >/dev/null 2>&1 &
  mosq_pid=$!
  mqtt_url="mqtt://127.0.0.1:$mqtt_port"
else
  mqtt_url="mqtt://127.0.0.1:1883"
fi
declare -A port
for svc in "${services[@]}"; do port[$svc]=$(free_port); done
addr() { echo "127.0.0.1:${port[$1]:-1}"; }


failed=0
for svc in "${services[@]}"; do
  name="linewatch-smoke-$svc-$$"
  P="LINEWATCH_${svc^^}__"
  env=(-e "${P}LOG_FORMAT=text")
  case $svc in
    gateway) env+=(-e "${P}HTTP_PORT=${port[$svc]}" -e "${P}TOKENS=[smoke-token]"
                   -e "${P}INGEST_ADDR=$(addr ingest)" -e "${P}INFERENCE_ADDR=$(addr inference)"
                   -e "${P}SYNC_ADDR=$(addr sync)" -e "${P}OTA_ADDR=$(addr ota)")
             check=(http "${port[$svc]}" /healthz) ;;
    ingest)  env+=(-e "${P}GRPC__PORT=${port[$svc]}" -e "${P}BROKERS__DEFAULT__URL=$mqtt_url"
                   -e "${P}INFERENCE__TARGET=$(addr inference)")
             check=(grpc "${port[$svc]}") ;;
    inference) env+=(-e "${P}GRPC__PORT=${port[$svc]}")
             check=(grpc "${port[$svc]}") ;;
    *)       env+=(-e "${P}GRPC__PORT=${port[$svc]}" -e "${P}MQTT__URL=$mqtt_url")
             check=(grpc "${port[$svc]}") ;;
  esac
  podman run -d --name "$name" "${run_flags[@]}" "${env[@]}" "linewatch-$svc:$tag" >/dev/null
  containers+=("$name")
  healthy=0
  for _ in $(seq 1 60); do
    if podman exec "$name" python /app/healthcheck.py "${check[@]}" 2>/dev/null; then healthy=1; break; fi
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 1
  done
  if [ $healthy = 1 ]; then
    log "ok: linewatch-$svc answers its health check (${check[*]})"
  else
    log "FAILED: linewatch-$svc is not healthy; its log:"
    podman logs --tail 40 "$name" 2>&1 | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done
passed=$(( ${#services[@]} - failed ))
log "image smoke test done"
echo "smoke: $passed passed, $failed failed"
[ $failed = 0 ]
