#!/bin/sh
# Installs what `make bench` needs beyond the Python packages: wrk, the C HTTP load generator
# (Debian package). Idempotent: does nothing when wrk is already on the PATH.
set -eu
if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y wrk
