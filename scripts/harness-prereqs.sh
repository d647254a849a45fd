#!/usr/bin/env bash
# What `make harness` and `make harness-smoke` need besides the build:
# nginx (Debian's package) as the plain-proxy baseline, oha (crates.io) as
# the load generator, curl for the storage scenario, and LiteLLM's proxy
# (PyPI, in its own venv .venv-litellm: its pins are not the test tools')
# as the AI-gateway peer. Installs what is missing; pinned versions.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/apt.sh"
# The harness itself runs on the test tools' venv (PyYAML).
"$here/test-prereqs.sh"

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v curl >/dev/null 2>&1 || missing+=(curl)
apt_install harness-prereqs "${missing[@]}"
if ! command -v oha >/dev/null 2>&1; then
  echo "harness-prereqs: cargo install oha 1.16.0 (about 8 minutes on 2 cores)" >&2
  cargo install oha --locked --version 1.16.0 --quiet
fi
litellm_venv="$root/.venv-litellm"
if [ ! -x "$litellm_venv/bin/litellm" ] || ! "$litellm_venv/bin/python3" -c '' 2>/dev/null; then
  echo "harness-prereqs: litellm[proxy] 1.106.2 into .venv-litellm" >&2
  rm -rf "$litellm_venv"
  python3 -m venv "$litellm_venv"
  "$litellm_venv/bin/python3" -m pip install -q --disable-pip-version-check 'litellm[proxy]==1.106.2'
fi
