#!/usr/bin/env bash
# install-nsys.sh — make sure an NVIDIA Nsight Systems CLI (nsys) is available.
#
# Idempotent: if nsys is already found (NSYS_AGENT_NSYS, PATH, or a known install
# directory) it prints where nsys and its QdstrmImporter are and exits 0. Otherwise, on
# Debian, it enables the contrib and non-free components for the running release and
# installs the `nsight-systems` package (which brings nsight-systems-target and the
# importer). Anywhere else it says what to do and exits 1.
set -euo pipefail

say() { printf 'install-nsys: %s\n' "$*"; }
die() { printf 'install-nsys: error: %s\n' "$*" >&2; exit 1; }

find_nsys() {
  if [ -n "${NSYS_AGENT_NSYS:-}" ]; then
    [ -x "$NSYS_AGENT_NSYS" ] || die "NSYS_AGENT_NSYS=$NSYS_AGENT_NSYS is not an executable file"
    echo "$NSYS_AGENT_NSYS"; return 0
  fi
  if command -v nsys >/dev/null 2>&1; then command -v nsys; return 0; fi
  local c
  for c in /usr/lib/nsight-systems/target-linux-x64/nsys \
           /opt/nvidia/nsight-systems/*/target-linux-x64/nsys \
           /opt/nvidia/nsight-systems/*/bin/nsys \
           /usr/local/cuda/bin/nsys \
           /opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

find_importer() {
  # QdstrmImporter lives in a host-* directory beside nsys' target-* directory. Debian
  # links nsys through several symlinks, so look around every step of the chain.
  local p=$1 dirs=() d i l
  for i in 1 2 3 4; do
    dirs+=("$(dirname "$(dirname "$p")")")
    [ -L "$p" ] || break
    l=$(readlink "$p")
    case $l in /*) p=$l ;; *) p=$(dirname "$p")/$l ;; esac
  done
  dirs+=("$(dirname "$(dirname "$p")")")
  for d in "${dirs[@]}"; do
    for i in "$d"/host-*/QdstrmImporter "$d"/host/*/QdstrmImporter; do
      [ -x "$i" ] && { echo "$i"; return 0; }
    done
  done
  return 0
}

report() {
  local nsys=$1 imp ver
  ver=$("$nsys" --version 2>/dev/null | head -n 1 || true)
  imp=$(find_importer "$nsys")
  say "nsys: $nsys (${ver:-version unknown})"
  if [ -n "$imp" ]; then say "QdstrmImporter: $imp"; else say "QdstrmImporter: not found (reports may stay .qdstrm)"; fi
}

if nsys=$(find_nsys); then report "$nsys"; exit 0; fi

[ -r /etc/os-release ] || die "cannot read /etc/os-release; install Nsight Systems from https://developer.nvidia.com/nsight-systems and set NSYS_AGENT_NSYS to its nsys"
. /etc/os-release
if [ "${ID:-}" != debian ]; then
  die "automatic install supports Debian only (this is ${PRETTY_NAME:-unknown}); install Nsight Systems from NVIDIA and put nsys on PATH or set NSYS_AGENT_NSYS"
fi
[ "$(id -u)" -eq 0 ] || die "nsys is missing and installing it needs root: run 'sudo $0'"
codename=${VERSION_CODENAME:-}
[ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release"

# Reuse the mirror the machine already uses for main.
mirror=http://deb.debian.org/debian
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [ -n "$m" ] && mirror=$m
elif [ -f /etc/apt/sources.list ]; then
  m=$(awk '$1=="deb" && $3 ~ /^'"$codename"'$/ {print $2; exit}' /etc/apt/sources.list)
  [ -n "$m" ] && mirror=$m
fi
src=/etc/apt/sources.list.d/nsys-agent-nonfree.sources
if [ ! -f "$src" ]; then
  say "enabling contrib non-free for $codename ($mirror) in $src"
  cat >"$src" <<SRC
Types: deb
URIs: $mirror
Suites: $codename
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
say "apt-get update"
apt-get update -qq || die "apt-get update failed"
say "installing nsight-systems (a few hundred MB; this takes a minute)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nsight-systems >/dev/null \
  || die "apt-get install nsight-systems failed; see the output above"
nsys=$(find_nsys) || die "nsight-systems was installed but no nsys binary was found"
report "$nsys"
