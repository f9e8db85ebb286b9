// Hands freed memory back to the OS after many connections have closed. The JavaScript heap
// grows with the garbage of connections that come and go (hundreds a second from a hostile
// client: 80 MiB more heap reserved for 25 MiB in use in the abuse run) and V8 keeps the pages;
// a full collection returns them. glibc keeps the freed malloc space of closed sessions (TLS
// and socket state, small and scattered) in the process; `malloc_trim` returns it. Each part
// is a no-op where it is not available.

import v8 from "node:v8";
import vm from "node:vm";
import { getLogger } from "./log.ts";

const log = getLogger("memory");

/** Options for `MemoryTrimmer`. */
export interface MemoryTrimmerOptions {
  /** Closed sessions that make a trim worth it. */
  threshold?: number;
  /** Wait this long after the threshold is reached (more closes may follow). */
  delayMs?: number;
  /**
   * The trim itself (tests inject one); default a full V8 collection, then glibc
   * `malloc_trim(0)` through FFI.
   */
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

let v8Collect: (() => void) | null | undefined;

/**
 * V8's full garbage collection, which also gives the heap's emptied pages back, or null where
 * it cannot be had. `--expose-gc` set at run time puts `gc` in contexts created afterwards, so
 * the server needs no command-line flag for it.
 */
export function loadV8Collect(): (() => void) | null {
  if (v8Collect !== undefined) return v8Collect;
  v8Collect = null;
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    if (typeof gc === "function") v8Collect = () => gc();
  } catch (error) {
    log.debug("V8's gc is not available: {error}", { error: (error as Error).message });
  }
  return v8Collect;
}

/** The default trim: a full V8 collection, then glibc's trim; null when neither is there. */
function defaultTrim(): (() => void) | null {
  const collect = loadV8Collect();
  const trim = loadGlibcTrim();
  if (!collect && !trim) return null;
  return () => {
    collect?.();
    trim?.();
  };
}

/**
 * Counts closed sessions and collects the heap and trims the C heap, debounced (at most once per
 * delay), once enough have closed.
 */
export class MemoryTrimmer {
  #threshold: number;
  #delayMs: number;
  #trim: (() => void) | null;
  #closed = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: MemoryTrimmerOptions = {}) {
    this.#threshold = options.threshold ?? 50;
    this.#delayMs = options.delayMs ?? 1000;
    this.#trim = options.trim ?? defaultTrim();
  }

  /** Notes one closed session; schedules a trim when the threshold is reached. */
  noteClosed(): void {
    if (!this.#trim || ++this.#closed < this.#threshold || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#closed = 0;
      const started = performance.now();
      this.#trim!();
      log.debug("Collected the heap and trimmed the C heap in {ms} ms", {
        ms: (performance.now() - started).toFixed(1),
      });
    }, this.#delayMs);
    Deno.unrefTimer(this.#timer);
  }

  /** Cancels a pending trim (shutdown). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
