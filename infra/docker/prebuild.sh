#!/usr/bin/env bash
# Build the stack's images ahead of `make up`, at a low CPU weight, so that CI can build them
# while `make test` runs and the Docker-mode tests then find them in the build cache.
#
#   infra/docker/prebuild.sh [LOG]
#
# The same Dockerfiles, targets and context as compose's build (read from infra/compose.yaml),
# one image at a time, by the classic builder (which compose uses where buildx is missing):
# `make up` afterwards builds through compose and finds every step cached. Only CI needs this;
# a user's `make up` builds the images itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
log="${1:-/dev/stdout}"
# The build-time CA bundle, as `bottega up` stages it (infra/certs/README.md).
if [ -n "${BOTTEGA_STACK__BUILD_CA_BUNDLE:-}" ]; then
  cp "$BOTTEGA_STACK__BUILD_CA_BUNDLE" infra/certs/bottega-build-ca.pem
fi
# Each image that compose.yaml builds, with its Dockerfile and target, read from compose.yaml.
mapfile -t images < <(
  .venv/bin/python - <<'PY'
from pathlib import Path

from bottega.stack.compose import load_compose

for service in load_compose(Path("infra/compose.yaml"))["services"].values():
    if "build" in service:
        build = service["build"]
        print(service["image"], build["dockerfile"], build.get("target", "-"))
PY
)
started=$(date +%s)
for entry in "${images[@]}"; do
  read -r image dockerfile target <<<"$entry"
  args=(--file "$dockerfile" --tag "$image" --cpu-shares 64)
  [ "$target" = - ] || args+=(--target "$target")
  DOCKER_BUILDKIT=0 docker build "${args[@]}" . >>"$log" 2>&1
done
echo "prebuild: $(( $(date +%s) - started ))s" >>"$log"
