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
# the browser tests (Playwright drives Debian's chromium) and the PDF tests (pdftoppm)
need_apt chromium
need_apt poppler-utils
# PostgreSQL server binaries (initdb, pg_ctl, postgres) for tests/pgserver.py, which
# finds them under /usr/lib/postgresql/<ver>/bin or on PATH: install Debian's
# `postgresql` only if neither has them.
have_pg_server() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && return 0
  done
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null
}
have_pg_server || apt_pkgs+=(postgresql)
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
# Likewise the packaged PostgreSQL cluster: tests start their own servers in
# temporary directories (as the unprivileged `postgres` user when run as root).
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postgresql 2>/dev/null; then
  $SUDO systemctl stop postgresql || true
fi
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _ status _; do
    if [ "$status" = online ]; then
      echo "ensure-system: stopping the packaged PostgreSQL cluster $ver/$name"
      $SUDO pg_ctlcluster "$ver" "$name" stop </dev/null || true
    fi
  done
fi
# initdb refuses to run as root: root runs the test servers as `postgres`, which
# the Debian package creates; create it if the binaries came from elsewhere.
if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
  echo "ensure-system: creating the postgres system user"
  useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
    --shell /usr/sbin/nologin postgres
fi

if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "ensure-system: npm ci"
    # --ignore-scripts: @foundry-rs/anvil's postinstall (it links or downloads the
    # binary) may be blocked; the tests and the demo run the binary of its platform
    # package (node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil) directly.
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
  fi
fi
