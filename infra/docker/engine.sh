#!/usr/bin/env bash
# A Docker engine with the Compose plugin, on a Debian machine, for Docker mode and its tests.
#
#   infra/docker/engine.sh up     install what is missing, start dockerd if no engine answers;
#                                 prints "started" (only) when it started one
#   infra/docker/engine.sh down   stop the dockerd that `up` started, and only that one
#
# Each piece only if missing: Debian's docker.io (Engine 20.10) and debootstrap; the Compose
# plugin (`docker compose`; Debian ships only the old `docker-compose` v1), built with Go from the
# Go module proxy; dockerd. `make docker-engine` runs `up`. Root is needed for what it installs
# or starts.
set -euo pipefail

COMPOSE_MODULE=github.com/docker/compose/v5
COMPOSE_VERSION="${COMPOSE_VERSION:-v5.6.0}"
state="${BOTTEGA_DOCKER_STATE:-${TMPDIR:-/tmp}/bottega-docker}"
# Root installs the plugin for every user of the machine; anyone else, for themselves.
if [ "$(id -u)" = 0 ]; then
  plugins=/usr/local/lib/docker/cli-plugins
else
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi

say() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: %s\n' "$*" >&2; exit 1; }
as_root() { [ "$(id -u)" = 0 ] || die "$1 needs root: run it as root (sudo make docker-engine)"; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return
  as_root "installing ${missing[*]}"
  command -v apt-get >/dev/null || die "no apt-get: install Docker Engine as your system documents"
  say "installing ${missing[*]} from Debian's archive"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts its daemon where an init system runs; this script owns dockerd's life.
  service docker stop >/dev/null 2>&1 || true
}

build_compose_plugin() {
  docker compose version >/dev/null 2>&1 && return
  command -v go >/dev/null || die "go is missing, and builds the Compose v2 plugin: install Go 1.24+"
  local scratch
  scratch=$(mktemp -d)
  say "building the Compose plugin ($COMPOSE_MODULE $COMPOSE_VERSION) with $(go version | cut -d' ' -f3) (about a minute)"
  # `go install` refuses a module with exclude directives: build it from a module requiring it.
  if ! (
    set -e
    cd "$scratch"
    go mod init bottega.local/compose-plugin
    go get "$COMPOSE_MODULE/cmd@$COMPOSE_VERSION"
    mkdir -p "$plugins"
    # As upstream's Makefile builds it, so that `docker compose version` tells its version.
    go build -trimpath -ldflags "-w -X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" \
      -o "$plugins/docker-compose" "$COMPOSE_MODULE/cmd"
  ) >"$scratch.log" 2>&1; then
    tail -n 20 "$scratch.log" >&2
    die "building the Compose plugin failed; its log: $scratch.log"
  fi
  rm -rf "$scratch" "$scratch.log"
  docker compose version >/dev/null || die "the Compose plugin built, but docker compose does not answer"
}

start_engine() {
  docker info >/dev/null 2>&1 && return
  as_root "starting dockerd"
  mkdir -p "$state"
  say "starting dockerd (its log: $state/dockerd.log)"
  nohup dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
      echo started
      return
    fi
    sleep 1
  done
  die "dockerd did not answer within 60s; its log: $state/dockerd.log"
}

stop_engine() {
  local pid_file="$state/dockerd.pid" pid
  [ -f "$pid_file" ] || return 0
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping the dockerd it started (pid $pid)"
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pid_file"
}

case "${1:-}" in
  up)
    install_packages
    build_compose_plugin
    start_engine
    ;;
  down) stop_engine ;;
  *) die "usage: $0 up|down" ;;
esac
