#!/usr/bin/env bash
# debian:bookworm-slim from Debian's archive, for an engine that cannot pull it (no registry).
#
#   infra/base/debian.sh [IMAGE]       (as root; `make docker-base` runs it)
#
# debootstrap builds a minimal bookworm root from the Debian mirror that this machine's apt
# sources name; it is slimmed as the official image is (no docs, man pages or locales, no apt
# lists, services never started by package scripts) and imported as IMAGE. It is the only image
# Bottega produces outside a Dockerfile: every other one is built from it (infra/README.md).
set -euo pipefail

image="${1:-debian:bookworm-slim}"
suite=bookworm

say() { printf 'docker-base: %s\n' "$*"; }
die() { printf 'docker-base: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is missing: install Docker Engine (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start it (dockerd, or systemctl start docker)"
if docker image inspect "$image" >/dev/null 2>&1; then
  say "$image is already on this engine"
  exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
[ "$(id -u)" = 0 ] || die "debootstrap needs root: run it as root (sudo make docker-base)"

# The first Debian mirror of the machine's apt sources (one-line or deb822), else Debian's CDN.
mirror=$(
  { grep -hsE '^[[:space:]]*(deb[[:space:]]|URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources || true; } \
    | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n1 | tr -d '[:space:]' \
    || true
)
mirror="${DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
# The image has no CA certificates (neither has the official one): its apt speaks plain HTTP,
# and checks Debian's signatures.
mirror="http://${mirror#*://}"
security="${mirror%/debian*}/debian-security"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
say "debootstrap $suite from $mirror (about a minute)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.log" 2>&1 \
  || die "debootstrap failed; its log: $root.log"
rm -f "$root.log"

# What the official image does: no docs, man pages or locales from later installs either...
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKG
# ...no apt caches kept in a layer, no recommends...
cat > "$root/etc/apt/apt.conf.d/docker" <<'APT'
APT::Install-Recommends "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT
# ...and no service started by a package's scripts.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# The archive, its updates and its security fixes, as the official image lists them.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
  "$root"/tmp/* "$root"/etc/hostname "$root"/etc/resolv.conf
: > "$root/etc/machine-id"

tar --numeric-owner -C "$root" -c . \
  | docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase $suite $mirror" - "$image" >/dev/null
say "$image: $(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
