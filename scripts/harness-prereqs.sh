#!/usr/bin/env bash
# What `make harness` and `make harness-smoke` need besides the build:
# nginx (Debian's package) as the plain-proxy baseline, oha (crates.io) as
# the load generator, curl for the storage scenario, and LiteLLM's proxy
# (PyPI) as the AI-gateway peer. Installs what is missing; pinned versions.
set -euo pipefail

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "harness-prereqs: please install: ${missing[*]}" >&2; exit 1; }
  echo "harness-prereqs: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v oha >/dev/null 2>&1; then
  echo "harness-prereqs: cargo install oha 1.16.0 (about 8 minutes on 2 cores)" >&2
  cargo install oha --locked --version 1.16.0 --quiet
fi
if ! command -v litellm >/dev/null 2>&1; then
  echo "harness-prereqs: pip install litellm[proxy] 1.106.2" >&2
  python3 -m pip install -q 'litellm[proxy]==1.106.2'
fi
