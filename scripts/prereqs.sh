#!/usr/bin/env bash
# What building the gateway needs (`make run`): a C compiler and cmake
# (Pingora's zlib-ng). Installs what is missing with apt-get; elsewhere it
# says what to install and stops. No Python, no Node: those are test tools
# (scripts/test-prereqs.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/apt.sh"

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
apt_install prereqs "${missing[@]}"
