#!/usr/bin/env bash
# What a machine needs to run the test suite, checked before it starts: `npm test` runs this from
# test/support/global-setup.ts, and .ci/run runs it before `npm install` (with --packages, to learn
# which Debian packages to install first).
#
#   scripts/check-machine.sh              one line per missing thing with how to get it; exit 1 if any
#   scripts/check-machine.sh --packages   only the Debian package names of what is missing; exit 0
#
# Needed: Node (the version package.json's "engines" asks for), git, redis-server and redis-cli,
# Chromium at /usr/bin/chromium or CHROMIUM_PATH (the dashboard test; no browser is
# downloaded), bubblewrap (the sandbox test), curl and python3 (the HTTP API's client tests), and
# openssl (the TLS Redis test's certificates). The npm packages come from `npm install`.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-report}"

missing=() # "package|what is missing and how to get it"
need() { missing+=("$1|$2"); }

if ! command -v node >/dev/null; then
  need nodejs "node: not on PATH (Node $(sed -n 's/.*"node": *">=\([0-9.]*\)".*/\1/p' package.json) or later)"
else
  wanted=$(sed -n 's/.*"node": *">=\([0-9.]*\)".*/\1/p' package.json)
  have=$(node -p 'process.versions.node')
  if [ -n "$wanted" ] && [ "$(printf '%s\n%s\n' "$wanted" "$have" | sort -V | head -1)" != "$wanted" ]; then
    need "" "node: $have is older than the $wanted that package.json's engines asks for"
  fi
fi
command -v git >/dev/null || need git "git: not on PATH (apt-get install -y git)"
# Always, REDIS_URL or not: some tests start Redis servers of their own (a killed one, a TLS one,
# a cluster joined with redis-cli).
command -v redis-server >/dev/null || need redis-server "redis-server: not on PATH (apt-get install -y redis-server)"
command -v redis-cli >/dev/null || need redis-tools "redis-cli: not on PATH (apt-get install -y redis-tools)"
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$chromium" ] || need chromium "chromium: nothing at $chromium (apt-get install -y chromium, or set CHROMIUM_PATH)"
command -v bwrap >/dev/null || need bubblewrap "bwrap: not on PATH (apt-get install -y bubblewrap)"
command -v curl >/dev/null || need curl "curl: not on PATH (apt-get install -y curl)"
command -v python3 >/dev/null || need python3 "python3: not on PATH (apt-get install -y python3)"
command -v openssl >/dev/null || need openssl "openssl: not on PATH (apt-get install -y openssl)"

if [ "$mode" = --packages ]; then
  for item in "${missing[@]}"; do [ -n "${item%%|*}" ] && echo "${item%%|*}"; done
  exit 0
fi
[ -d node_modules/opencode-ai ] || need "" "node_modules: not installed (npm install)"
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "This machine lacks what the test suite needs:" >&2
for item in "${missing[@]}"; do echo "  - ${item#*|}" >&2; done
echo "(Debian: apt-get install -y redis-server chromium bubblewrap curl python3 openssl git)" >&2
exit 1
