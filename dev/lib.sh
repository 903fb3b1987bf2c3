# shellcheck shell=bash
# Shared helpers for the scripts in dev/. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It only defines functions and sets nothing else, so sourcing it is safe under `set -euo pipefail`.

# Where built and downloaded tools are kept between runs (same rule as testkit::cache_dir()).
radio24_cache_dir() {
    printf '%s\n' "${RADIO24_CACHE:-$HOME/.cache/radio24}"
}

radio24_tools_dir() {
    printf '%s/tools\n' "$(radio24_cache_dir)"
}

# Progress and summaries go to stderr so stdout stays usable for values.
radio24_log() {
    printf '%s\n' "$*" >&2
}

radio24_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# True when a Debian package is installed (not merely known or half-removed).
radio24_deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
