#!/usr/bin/env bash
# Installs the system packages the tests and code generation need, if missing.
# Debian/Ubuntu only; Go tools are installed at pinned versions by the Makefile.
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# The well-known types (timestamp, duration) the protos import; only
# recommended by protobuf-compiler, and recommendations are not installed here.
[ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
# Independent readers of what packaging/ writes.
command -v bsdtar >/dev/null 2>&1 || need+=(libarchive-tools)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Independent verifier of our IdP's SAML signatures (internal/oktasim).
command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)
# The profile tests read .mobileconfig files with Python's plistlib, an
# independent plist reader.
command -v python3 >/dev/null 2>&1 || need+=(python3)
# make demo signs in with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
