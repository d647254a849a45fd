#!/usr/bin/env bash
# Installs the system packages the build and tests need when they are missing.
# Pingora's zlib-ng needs cmake; the Redis tests need redis-server. Debian/Ubuntu only (apt-get); elsewhere it
# says what to install and stops.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
# The Redis backend's tests start their own redis-server processes.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# A storage test uploads with curl (it sends `Expect: 100-continue`).
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Seed 000's JavaScript snippets (the AWS SDK v3, axios) run under Node.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

# The storage tests drive the gateway with real S3 clients (boto3, the AWS
# CLI) and use moto's server as a second S3 implementation: from PyPI, pinned.
here="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c "import boto3, moto.server" >/dev/null 2>&1 || ! command -v aws >/dev/null 2>&1; then
  echo "prereqs: installing the S3 test clients from PyPI" >&2
  python3 -m pip install -q -r "$here/../tests/s3/requirements.txt"
fi

install_node_clients() {
  # Pinned in tests/node/package-lock.json; installed inside the project.
  if [ ! -d "$here/../tests/node/node_modules/@aws-sdk/client-s3" ] || [ ! -d "$here/../tests/node/node_modules/form-data" ]; then
    echo "prereqs: installing the JavaScript test clients from npm (tests/node)" >&2
    (cd "$here/../tests/node" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  install_node_clients
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: please install: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "prereqs: run as root or install sudo to get: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "prereqs: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
install_node_clients
