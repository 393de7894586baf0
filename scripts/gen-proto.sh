#!/usr/bin/env bash
# Regenerates the Go code of every .proto under proto/ (make proto) or, with --check,
# regenerates it into a temporary folder and fails with a diff when the committed code
# differs (make proto-check, part of make ci). No protoc: scripts/protogen compiles with
# protocompile and runs the generators pinned as tool directives in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t protos < <(cd proto && find . -name '*.proto' -printf '%P\n' | sort)
if [ ${#protos[@]} -eq 0 ]; then
  echo "gen-proto: no .proto files under proto/; nothing to generate"
  exit 0
fi
if [ "${1:-}" != "--check" ]; then
  go run ./scripts/protogen -root proto -out proto "${protos[@]}"
  echo "gen-proto: regenerated the code of ${protos[*]} under proto/"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run ./scripts/protogen -root proto -out "$tmp" "${protos[@]}"
status=0
# Every generated file must match its committed copy, and no committed generated file may
# be left without a .proto that makes it.
while IFS= read -r f; do
  if ! diff -u "proto/$f" "$tmp/$f"; then
    status=1
  fi
done < <(cd "$tmp" && find . -type f -printf '%P\n' | sort)
while IFS= read -r f; do
  if [ ! -e "$tmp/$f" ]; then
    echo "gen-proto: proto/$f is committed but no .proto generates it; remove it"
    status=1
  fi
done < <(cd proto && find . -name '*.pb.go' -printf '%P\n' | sort)
if [ $status -ne 0 ]; then
  echo "gen-proto: the committed generated code differs from what proto/ generates; run make proto and commit the result" >&2
  exit 1
fi
echo "gen-proto: generated code is up to date (${protos[*]})"
