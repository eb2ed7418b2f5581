#!/usr/bin/env bash
# Debian packages the test suite and the native stack need (idempotent).
# ecCodes/cdo command-line tools check our GRIB2/BUFR, PostgreSQL backs the
# run catalog and the Prefect server, Chromium drives the page test.
set -euo pipefail
PKGS=(libeccodes-tools cdo postgresql chromium chromium-driver docker-compose)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
