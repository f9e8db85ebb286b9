# Shared by scripts/lilt, scripts/test and friends: finds the pinned Deno, installing it from
# the npm registry when no deno 2.9.6 is on PATH, so a fresh machine with only Node/npm, or
# only Deno, can run Lilt. Deno itself fetches the npm packages pinned in deno.lock.
# Source it; it sets LILT_ROOT and DENO_BIN.

LILT_DENO_VERSION="2.9.6"
LILT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LILT_TOOLCHAIN="$LILT_ROOT/scripts/toolchain"
# The permissions the server needs: sockets, its data dir and config, env (logging), system
# info (hostname, memory), FFI (SQLCipher when a storage key is set).
LILT_DENO_PERMS=(--allow-net --allow-read --allow-write --allow-env --allow-sys --allow-ffi)
# V8's young generation capped at 4 MiB semi-spaces: under a message flood V8 otherwise grows them
# to 16 MiB each, about 25 MiB more RSS (scripts/bench/abuse.ts). scripts/lilt, the compiled
# binary and the FreeBSD rc.d script all run with it.
LILT_V8_DEFAULT_FLAGS="--max-semi-space-size=4"

lilt_log() { printf 'lilt: %s\n' "$*" >&2; }

# Picks a Deno: one on PATH when it is the pinned version, else the one npm installs under
# scripts/toolchain (installed on first use; package.json pins the exact version, and the
# deno package pins its platform binaries exactly).
lilt_find_deno() {
  DENO_BIN=""
  local candidate
  candidate="$(command -v deno 2>/dev/null || true)"
  if [ -n "$candidate" ] && "$candidate" --version 2>/dev/null | head -n1 | grep -q "^deno $LILT_DENO_VERSION "; then
    DENO_BIN="$candidate"
  else
    DENO_BIN="$LILT_TOOLCHAIN/node_modules/.bin/deno"
    if [ ! -x "$DENO_BIN" ] || ! "$DENO_BIN" --version >/dev/null 2>&1; then
      if ! command -v npm >/dev/null 2>&1; then
        lilt_log "deno $LILT_DENO_VERSION is needed: install Node.js/npm (to fetch it) or Deno $LILT_DENO_VERSION"
        return 1
      fi
      lilt_log "installing deno $LILT_DENO_VERSION from the npm registry (first run)"
      # No lockfile: npm ci would demand entries for every platform's optional binary, and
      # registry mirrors do not always carry them all.
      (cd "$LILT_TOOLCHAIN" &&
        npm install --no-audit --no-fund --no-package-lock --loglevel=error >&2) || {
        lilt_log "npm install in $LILT_TOOLCHAIN failed; see the messages above"
        return 1
      }
    fi
  fi
  export DENO_BIN
  # A stable path to the pinned Deno for editors and git hooks (.tools/ is not committed).
  if [ "$DENO_BIN" = "$LILT_TOOLCHAIN/node_modules/.bin/deno" ]; then
    mkdir -p "$LILT_ROOT/.tools/deno/bin"
    ln -sf "$DENO_BIN" "$LILT_ROOT/.tools/deno/bin/deno"
  fi
  # Fetch the npm packages pinned in deno.lock (a no-op once node_modules is complete).
  if [ ! -d "$LILT_ROOT/node_modules" ] || [ "$LILT_ROOT/deno.lock" -nt "$LILT_ROOT/node_modules" ]; then
    (cd "$LILT_ROOT" && "$DENO_BIN" install --frozen --quiet >&2) || {
      lilt_log "deno install failed (dependencies pinned in deno.lock)"
      return 1
    }
    touch "$LILT_ROOT/node_modules"
  fi
}
