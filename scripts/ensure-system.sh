#!/usr/bin/env bash
# Installs the system and npm packages that the tests and the demo use, only if
# they are missing. Safe to run again; prints what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
# "install ok installed" only: a removed package keeps a dpkg entry (config-files).
need_apt() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || apt_pkgs+=("$1")
}
need_apt mosquitto
need_apt mosquitto-clients
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "ensure-system: installing ${apt_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
# The packaged service is not used: tests and the demo start their own brokers.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi

if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "ensure-system: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
