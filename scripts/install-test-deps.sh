#!/usr/bin/env bash
# install-test-deps.sh — tools the test suite needs beyond Go and nsys.
#
# Idempotent. Installs what is missing of: Debian's `chromium` (the torchprof HTML report
# test renders the report headless and screenshots it) and `systemd-analyze` (the
# deployment test verifies the systemd unit with it). Needs root to install; when
# everything is on PATH it only says where. In CI (CI=true) a tool it cannot install fails
# the run: the tests that need it fail rather than skip there.
set -euo pipefail

say() { printf 'install-test-deps: %s\n' "$*"; }

# tool:package pairs
need=("chromium:chromium" "systemd-analyze:systemd")
missing=()
for pair in "${need[@]}"; do
  tool=${pair%%:*} pkg=${pair#*:}
  if command -v "$tool" >/dev/null 2>&1; then
    say "$tool: $(command -v "$tool")"
  else
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  say "missing: ${missing[*]}; run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "missing: ${missing[*]}, and this is not Debian: install them on PATH" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" fonts-dejavu-core >/dev/null
for pair in "${need[@]}"; do
  tool=${pair%%:*}
  say "$tool: $(command -v "$tool")"
done
