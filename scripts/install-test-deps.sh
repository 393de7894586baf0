#!/usr/bin/env bash
# install-test-deps.sh — tools the test suite needs beyond Go and nsys.
#
# Idempotent. Installs Debian's `chromium`, which the torchprof HTML report test uses to
# render the report headless and screenshot it. Needs root to install; when chromium is
# already on PATH it only says where it is.
set -euo pipefail

say() { printf 'install-test-deps: %s\n' "$*"; }

if command -v chromium >/dev/null 2>&1; then
  say "chromium: $(command -v chromium)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  say "chromium is missing; run as root: apt-get update && apt-get install -y chromium" >&2
  # Outside CI the screenshot test skips without chromium; in CI it must run.
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "chromium is missing and this is not Debian: install a headless-capable chromium on PATH" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
say "chromium: $(command -v chromium)"
