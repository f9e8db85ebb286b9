# Shared by scripts/lilt, scripts/test and friends: finds (or installs) the pinned Deno and
# the npm dependencies, so a fresh machine with only Node/npm, or only Deno, can run Lilt.
# Source it; it sets LILT_ROOT and DENO_BIN.

LILT_DENO_VERSION="2.9.6"
LILT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The permissions the server needs: sockets, its data dir and config, env (logging), system
# info (hostname, memory), FFI (SQLCipher when a storage key is set).
LILT_DENO_PERMS=(--allow-net --allow-read --allow-write --allow-env --allow-sys --allow-ffi)

lilt_log() { printf 'lilt: %s\n' "$*" >&2; }

# Installs node_modules from package-lock.json when it is missing or stale.
lilt_install_npm_deps() {
  local stamp="$LILT_ROOT/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ ! "$LILT_ROOT/package-lock.json" -nt "$stamp" ]; then
    return 0
  fi
  if command -v npm >/dev/null 2>&1; then
    lilt_log "installing npm dependencies (pinned in package-lock.json)"
    (cd "$LILT_ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2) || {
      lilt_log "npm ci failed; see the messages above"
      return 1
    }
  elif [ -n "${DENO_BIN:-}" ]; then
    lilt_log "npm not found; installing npm dependencies with deno install"
    (cd "$LILT_ROOT" && "$DENO_BIN" install >&2) || return 1
  else
    lilt_log "neither npm nor deno $LILT_DENO_VERSION is available: install Node.js/npm or Deno"
    return 1
  fi
}

# Picks a Deno: one on PATH when it is the pinned version, else the one npm installs.
lilt_find_deno() {
  DENO_BIN=""
  local candidate
  candidate="$(command -v deno 2>/dev/null || true)"
  if [ -n "$candidate" ] && "$candidate" --version 2>/dev/null | head -n1 | grep -q "^deno $LILT_DENO_VERSION "; then
    DENO_BIN="$candidate"
  fi
  lilt_install_npm_deps || return 1
  if [ -z "$DENO_BIN" ]; then
    DENO_BIN="$LILT_ROOT/node_modules/.bin/deno"
    if [ ! -x "$DENO_BIN" ]; then
      lilt_log "deno $LILT_DENO_VERSION is missing from node_modules; run 'npm ci' in $LILT_ROOT"
      return 1
    fi
  fi
  export DENO_BIN
}
