#!/bin/sh
# Build-time CA certificates (infra/certs/README.md), for the build steps that download.
#
#   trust.sh add      each certificate of each *.crt and *.pem file beside this script joins the
#                     system's trust store (pip reads it; Java's store is made from it)
#   trust.sh remove   they leave it again, before the stage's image is kept
set -eu
here=$(dirname "$0")
store=/usr/local/share/ca-certificates/bottega-build

case "${1:-}" in
  add)
    mkdir -p "$store"
    for bundle in "$here"/*.crt "$here"/*.pem; do
      [ -f "$bundle" ] || continue
      # update-ca-certificates wants one certificate a file.
      stem="$store/$(basename "${bundle%.*}")"
      awk -v stem="$stem" '
        /BEGIN CERTIFICATE/ { n++; file = stem "-" n ".crt" }
        file { print > file }
        /END CERTIFICATE/ { close(file); file = "" }
      ' "$bundle"
    done
    update-ca-certificates >/dev/null 2>&1
    ;;
  remove)
    rm -rf "$store"
    update-ca-certificates --fresh >/dev/null 2>&1
    ;;
  *)
    echo "usage: $0 add|remove" >&2
    exit 2
    ;;
esac
