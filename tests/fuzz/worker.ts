// The fuzzer's worker thread (scripts/fuzz): runs one target and publishes each input into
// shared memory before running it, so the main thread can name the input of a hang, which it
// cannot interrupt any other way than by terminating this worker.

import { type Finding, fuzz } from "./engine.ts";
import { TARGETS } from "./targets.ts";

/** What the main thread sends to start a run. */
export interface WorkerStart {
  target: string;
  corpus: string[];
  seed: number;
  deadline: number;
  budgetMs: number;
  /** Int32 [0] input counter, [1] input length; its UTF-16 units from byte 8. */
  shared: SharedArrayBuffer;
}

/** What the worker sends back. */
export type WorkerReport =
  | { type: "finding"; finding: Finding }
  | { type: "done"; runs: number; corpusSize: number; signatures: number }
  | { type: "failed"; error: string };

/** Offset of the input's UTF-16 units in the shared buffer. */
export const SHARED_HEADER_BYTES = 8;

declare const self: Worker & { onmessage: (event: MessageEvent<WorkerStart>) => void };

self.onmessage = async (event: MessageEvent<WorkerStart>) => {
  const start = event.data;
  const header = new Int32Array(start.shared, 0, 2);
  const units = new Uint16Array(start.shared, SHARED_HEADER_BYTES);
  try {
    const target = TARGETS[start.target];
    const stats = await fuzz(target, {
      corpus: start.corpus,
      seed: start.seed,
      deadline: start.deadline,
      budgetMs: start.budgetMs,
      onInput(input) {
        // UTF-16 units, not UTF-8: an input with lone surrogates is kept as it was.
        const length = Math.min(input.length, units.length);
        for (let i = 0; i < length; i++) units[i] = input.charCodeAt(i);
        Atomics.store(header, 1, length);
        Atomics.add(header, 0, 1);
      },
      onFinding(finding) {
        self.postMessage({ type: "finding", finding } satisfies WorkerReport);
      },
    });
    self.postMessage({ type: "done", ...stats } satisfies WorkerReport);
  } catch (error) {
    const text = error instanceof Error ? error.stack ?? error.message : String(error);
    self.postMessage({ type: "failed", error: text } satisfies WorkerReport);
  }
};
