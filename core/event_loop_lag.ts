// Event-loop lag, sampled once by the core for everyone who reports it (/metrics, the shell's
// `debug loop`): how late a periodic timer fires is how long other work kept the loop busy.
// Deno's node:perf_hooks monitorEventLoopDelay does not see a blocked loop (a 200 ms busy wait
// reads as microseconds), so the server measures it itself.

/** How often the sampler's timer is due. */
export const LAG_SAMPLE_INTERVAL_MS = 500;

/** How far back `maxSeconds` looks. */
export const LAG_WINDOW_MS = 60_000;

/**
 * A repeating timer that records how late it fires: the last lag, and the largest over the
 * last minute. Its timer does not keep the process alive; `stop()` clears it.
 *
 * @example
 * ```ts
 * const lag = new EventLoopLag();
 * lag.start();
 * // later
 * console.log(lag.lastSeconds, lag.maxSeconds);
 * lag.stop();
 * ```
 */
export class EventLoopLag {
  /** Lag of each sample in the window, oldest first (seconds). */
  #window: number[] = [];
  #windowSize = Math.round(LAG_WINDOW_MS / LAG_SAMPLE_INTERVAL_MS);
  #timer: ReturnType<typeof setInterval> | undefined;
  #expected = 0;
  #last = 0;
  #samples = 0;

  /** Starts sampling (again after `stop`); a running sampler is left as it is. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#expected = performance.now() + LAG_SAMPLE_INTERVAL_MS;
    const timer = setInterval(() => this.#sample(), LAG_SAMPLE_INTERVAL_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Stops sampling; the values read so far stay. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Whether the sampler's timer is running. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** How late the timer last fired, in seconds (0 before the first sample). */
  get lastSeconds(): number {
    return this.#last;
  }

  /** The largest lag of the samples taken in the last minute, in seconds. */
  get maxSeconds(): number {
    let max = 0;
    for (const lag of this.#window) if (lag > max) max = lag;
    return max;
  }

  /** Samples taken since the server started. */
  get samples(): number {
    return this.#samples;
  }

  #record(lagSeconds: number): void {
    this.#last = lagSeconds;
    this.#samples++;
    this.#window.push(lagSeconds);
    if (this.#window.length > this.#windowSize) this.#window.shift();
  }

  #sample(): void {
    const now = performance.now();
    this.#record(Math.max(0, now - this.#expected) / 1000);
    this.#expected = now + LAG_SAMPLE_INTERVAL_MS;
  }
}
