#!/usr/bin/env bash
# Build the linewatch service images with docker or podman, whichever works here.
#
#   scripts/build-images.sh [SERVICE...]        (default: all five)
#
# Environment:
#   BASE_IMAGE   base image for both stages (default: the Dockerfiles' python:3.11-slim)
#   TAG          image tag (default: the project version from pyproject.toml)
#   REGISTRY     prefix, e.g. registry.example.com/linewatch (default: none)
#   ENGINE       docker or podman (default: podman if installed, else docker)
#   BUILD_FLAGS  extra flags for the build command, e.g. "--isolation chroot"
set -euo pipefail
cd "$(dirname "$0")/.."

services=("$@")
[ ${#services[@]} -gt 0 ] || services=(ingest inference sync ota gateway)

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else echo "build-images: neither podman nor docker is installed" >&2; exit 1
  fi
fi
tag=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}
prefix=${REGISTRY:+${REGISTRY%/}/}

flags=()
[ -n "${BASE_IMAGE:-}" ] && flags+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# podman writes OCI images by default, which drop HEALTHCHECK; keep the docker format.
[ "$engine" = podman ] && flags+=(--format docker)
# shellcheck disable=SC2206 # word splitting of BUILD_FLAGS is intended
[ -n "${BUILD_FLAGS:-}" ] && flags+=(${BUILD_FLAGS})

for svc in "${services[@]}"; do
  [ -f "services/$svc/Dockerfile" ] || { echo "build-images: no services/$svc/Dockerfile" >&2; exit 1; }
  image="${prefix}linewatch-$svc:$tag"
  echo "== $engine build $image"
  start=$(date +%s)
  "$engine" build "${flags[@]}" -f "services/$svc/Dockerfile" -t "$image" .
  echo "== built $image in $(( $(date +%s) - start ))s"
done
