#!/usr/bin/env bash
# Debian packages the test suite starts for real (see STACK.md): pgbouncer for
# test/pgbouncer.test.ts; prometheus (with promtool) for test/prometheus.test.ts, which checks
# /metrics with `promtool check metrics` and scrapes `warden serve` with a real Prometheus.
# Idempotent and quiet, so CI can call it on every run: it only talks when it installs
# something or fails (then with apt-get's full output).
set -euo pipefail

missing=()
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
{ [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; } || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-ci-deps: missing ${missing[*]}; run this script as root (or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
# apt's chatter (debconf notices included) goes to the log, shown only if the install fails.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-ci-deps: apt-get install ${missing[*]} failed" >&2
  exit 1
fi
# The package's service would bind 6432 and hold it; the tests start their own instance.
# Likewise prometheus on 9090: the tests run their own on a free loopback port.
for service in pgbouncer prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" >/dev/null 2>&1 || true
  fi
done
echo "install-ci-deps: installed ${missing[*]}"
