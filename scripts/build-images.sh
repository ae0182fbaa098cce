#!/usr/bin/env bash
# Build the linewatch service images with docker or podman, whichever works here.
#
#   scripts/build-images.sh [SERVICE...]        (default: every service in services.toml)
#
# One Dockerfile (deploy/docker/Dockerfile) builds every image; each service's build args
# (port, protocol, requirements, models) come from services.toml.
#
# Environment:
#   BASE_IMAGE   base image for both stages (default: the Dockerfile's python:3.11-slim)
#   TAG          image tag (default: the project version from pyproject.toml)
#   REGISTRY     prefix, e.g. registry.example.com/linewatch (default: none)
#   ENGINE       docker or podman (default: podman if installed, else docker)
#   BUILD_FLAGS  extra flags for the build command, e.g. "--isolation chroot"
set -euo pipefail
cd "$(dirname "$0")/.."

table() { python3 dev/linewatch_dev/services.py "$@"; }  # stdlib only (tomllib)
services=("$@")
# shellcheck disable=SC2207 # the names are single words
[ ${#services[@]} -gt 0 ] || services=($(table))

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
  row=$(table "$svc") || exit 1
  args=(--build-arg "SERVICE=$svc")
  while IFS='=' read -r key value; do
    case $key in
      package) args+=(--build-arg "PACKAGE=$value") ;;
      port) args+=(--build-arg "PORT=$value") ;;
      protocol) args+=(--build-arg "PROTOCOL=$value") ;;
      requirements) args+=(--build-arg "REQUIREMENTS=$value") ;;
      models) args+=(--build-arg "MODELS=$value") ;;
    esac
  done <<< "$row"
  image="${prefix}linewatch-$svc:$tag"
  echo "== $engine build $image"
  start=$(date +%s)
  "$engine" build "${flags[@]}" "${args[@]}" -f deploy/docker/Dockerfile -t "$image" .
  echo "== built $image in $(( $(date +%s) - start ))s"
done
