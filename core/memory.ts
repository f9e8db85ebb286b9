// Hands freed native memory back to the OS after many connections have closed. glibc keeps
// the freed malloc space of closed sessions (TLS and socket state, small and scattered) in
// the process; `malloc_trim` returns it. A no-op where glibc or FFI is not available.

import { getLogger } from "./log.ts";

const log = getLogger("memory");

/** Options for `MemoryTrimmer`. */
export interface MemoryTrimmerOptions {
  /** Closed sessions that make a trim worth it. */
  threshold?: number;
  /** Wait this long after the threshold is reached (more closes may follow). */
  delayMs?: number;
  /** The trim itself (tests inject one); default glibc `malloc_trim(0)` through FFI. */
  trim?: () => void;
}

let glibcTrim: (() => void) | null | undefined;

/** glibc's `malloc_trim(0)`, or null when it cannot be called (not glibc, no FFI permission). */
export function loadGlibcTrim(): (() => void) | null {
  if (glibcTrim !== undefined) return glibcTrim;
  glibcTrim = null;
  if (Deno.build.os !== "linux") return glibcTrim;
  try {
    const lib = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    glibcTrim = () => void lib.symbols.malloc_trim(0n);
  } catch (error) {
    log.debug("malloc_trim is not available: {error}", { error: (error as Error).message });
  }
  return glibcTrim;
}

/** Counts closed sessions and trims the C heap, debounced, once enough have closed. */
export class MemoryTrimmer {
  #threshold: number;
  #delayMs: number;
  #trim: (() => void) | null;
  #closed = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: MemoryTrimmerOptions = {}) {
    this.#threshold = options.threshold ?? 100;
    this.#delayMs = options.delayMs ?? 2000;
    this.#trim = options.trim ?? loadGlibcTrim();
  }

  /** Notes one closed session; schedules a trim when the threshold is reached. */
  noteClosed(): void {
    if (!this.#trim || ++this.#closed < this.#threshold || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#closed = 0;
      const started = performance.now();
      this.#trim!();
      log.debug("Trimmed the C heap in {ms} ms", { ms: (performance.now() - started).toFixed(1) });
    }, this.#delayMs);
    Deno.unrefTimer(this.#timer);
  }

  /** Cancels a pending trim (shutdown). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
