#!/usr/bin/env bash
# What `make test` needs besides the build (scripts/prereqs.sh), all of it
# inside the project except Debian's packages:
#   - redis-server (the Redis tests start their own), curl (a storage test
#     sends `Expect: 100-continue`; the TLS tests), openssl (s_client tries
#     TLS 1.1), systemd-analyze (verifies the systemd unit), Node.js and npm,
#     and Chromium (the portal and console run in it, tests/browser.rs):
#     from apt when missing;
#   - .venv/: a virtual environment the project makes with the machine's
#     python3, holding the pinned Python test tools of tests/requirements.txt
#     (boto3, the AWS CLI, moto's server, PyYAML, openapi-spec-validator,
#     schemathesis). A stock Debian's python3
#     refuses `pip install` (PEP 668), so nothing is installed into it; its
#     `venv` module comes from the python3-venv package, installed when missing;
#   - tests/node/node_modules: the pinned JavaScript clients (npm ci).
# Re-running is cheap: each step is skipped when what it makes is current.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/apt.sh"
"$here/prereqs.sh"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/bin/chromium ] || missing+=(chromium)
apt_install test-prereqs "${missing[@]}"

# The Python test tools, in the project's own venv. It is made again when
# the requirements change or its interpreter is gone.
venv="$root/.venv"
req="$root/tests/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c '' 2>/dev/null \
   || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  py="$(command -v python3)"
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 has no ensurepip without python3-venv.
    rm -rf "$venv"
    apt_install test-prereqs python3-venv
    "$py" -m venv "$venv"
  fi
  echo "test-prereqs: installing the Python test tools into .venv ($py)" >&2
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

# The JavaScript clients of seed 000 and playwright-core (which drives the
# Debian Chromium above; it downloads no browser), pinned in
# tests/node/package-lock.json.
node_dir="$root/tests/node"
node_stamp="$node_dir/node_modules/.kikaku-lock.sha256"
node_want="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  echo "test-prereqs: installing the JavaScript test clients (tests/node, npm ci)" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$node_stamp"
fi
