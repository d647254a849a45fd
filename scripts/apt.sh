# Sourced by the prereqs scripts: `apt_install <who> <package>...` installs
# the Debian packages given (none: nothing to do), as root or through sudo.
apt_install() {
  local who="$1"
  shift
  [ "$#" -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: please install: $*" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "$who: run as root or install sudo to get: $*" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "$who: installing $* (apt-get)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
