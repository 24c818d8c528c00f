#!/bin/bash
# Docker mode's broker health check: healthy when the broker answers a Kafka request on its own
# listener (ApiVersions v0, no error), as local mode's check asks it for metadata. Bash and
# coreutils only: a JVM per check would cost a second of CPU every interval.
set -eu
exec 3<>"/dev/tcp/127.0.0.1/${BOTTEGA_KAFKA__PORT:-9092}"
# size 16 | api_key 18 (ApiVersions) | api_version 0 | correlation_id 1 | client_id "health"
printf '\x00\x00\x00\x10\x00\x12\x00\x00\x00\x00\x00\x01\x00\x06health' >&3
reply=$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n')
# after the 4-byte size: correlation_id 1, error_code 0
[ "${reply:8:12}" = "000000010000" ]
