#!/bin/bash
# The container image's HEALTHCHECK (installed as /opt/longenc/bin/longenc-healthcheck): asks the
# server's grpc.health.v1 service on the gRPC port it really bound, read from the --port_file
# that deploy/server.flags sets, so the check follows --port whether it comes from the flag
# file, FLAGS_port or an argument. Exit 0 only when SERVING (not while loading or draining).
# Assumes --host is a wildcard or loopback address, as in server.flags.
set -euo pipefail
port_file="${LONGENC_PORT_FILE:-/tmp/longenc-grpc.port}"
if ! port="$(cat "$port_file" 2>/dev/null)" || [ -z "$port" ]; then
  echo "longenc-healthcheck: no $port_file yet: the gRPC port is not bound" >&2
  exit 1
fi
exec longenc health --server="127.0.0.1:${port}" --timeout=3s
