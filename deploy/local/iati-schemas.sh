#!/usr/bin/env bash
# The IATI 2.03 XML schemas and codelists, for validating monitoring's open-data export in
# tests. They ship inside pyIATI's source distribution on PyPI (MIT; the IATI Standard is
# open): we fetch that archive once and keep only the 2.03 schemas and codelists.
# pyIATI itself is not installed (it pins libraries that no longer build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${MPTF_CACHE_DIR:-$HOME/.cache/mptf}/iati-2.03"
PY="${MPTF_PYTHON:-$ROOT/.venv/bin/python}"
[[ -f $DEST/.complete ]] && { echo "$DEST"; exit 0; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$tmp" pyIATI==0.4.1 >&2
mkdir -p "$DEST"
tar -xzf "$tmp"/pyIATI-0.4.1.tar.gz -C "$tmp"
cp -r "$tmp"/pyIATI-0.4.1/iati/resources/standard/2-03/schemas "$DEST/"
cp -r "$tmp"/pyIATI-0.4.1/iati/resources/standard/2-03/codelists "$DEST/"
touch "$DEST/.complete"
echo "$DEST"
