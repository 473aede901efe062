#!/usr/bin/env bash
# Installs the system packages the tests, code generation and the demo need,
# if missing. Debian/Ubuntu only; Go tools are installed at pinned versions
# by the Makefile, npm packages by scripts/npm.sh.
#
#   scripts/deps.sh          everything `make test` needs
#   scripts/deps.sh demo     only what `make demo` needs
set -euo pipefail

case ${1:-test} in
  test | demo) what=${1:-test} ;;
  *) echo "usage: $0 [test|demo]" >&2; exit 2 ;;
esac

need=()
# make demo signs in with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
# make demo holds its data dir with flock (util-linux, essential on Debian).
command -v flock >/dev/null 2>&1 || need+=(util-linux)

if [ "$what" = test ]; then
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  # The well-known types (timestamp, duration) the protos import; only
  # recommended by protobuf-compiler, and recommendations are not installed here.
  [ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
  # Independent readers of what packaging/ writes.
  command -v bsdtar >/dev/null 2>&1 || need+=(libarchive-tools)
  command -v cpio >/dev/null 2>&1 || need+=(cpio)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # The MDM scripts' watchdog kills what a hung status started with pkill,
  # which the package's sandbox test runs as macOS has it.
  command -v pkill >/dev/null 2>&1 || need+=(procps)
  # Independent verifier of our IdP's SAML signatures (internal/oktasim).
  command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)
  # The profile tests read .mobileconfig files with Python's plistlib, an
  # independent plist reader.
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  # Real-browser tests (internal/browser) drive Debian's Chromium; certutil
  # puts a test CA into the NSS database Chromium trusts.
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
  # Screenshots need a font; Chromium only recommends one.
  compgen -G '/usr/share/fonts/truetype/*/*.ttf' >/dev/null || need+=(fonts-liberation)
  # The README's metrics example runs curl as written.
  command -v curl >/dev/null 2>&1 || need+=(curl)
  # npm installs the pinned npm packages tests use (scripts/npm.sh).
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "missing: ${need[*]}; run as root or install sudo: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
