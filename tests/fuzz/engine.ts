// The fuzzing loop shared by the fuzzer's worker (scripts/fuzz) and the fuzz tests: runs a
// target over its corpus and then over mutants, keeps mutants that show a new behaviour, and
// reports each distinct finding once, shrunk to a smaller input that still shows it.

import { createRandom, mutate, randomInt } from "./mutate.ts";
import { FuzzFinding, type FuzzTarget, shape } from "./target.ts";

/** A broken property and the input that broke it. */
export interface Finding {
  target: string;
  /** What broke: "exception", "slow", "round-trip", "differential", … */
  kind: string;
  message: string;
  /** The input, shrunk when that kept the same finding. */
  input: string;
  /** The input as first found. */
  original: string;
  /** Seeds the check's own randomness (e.g. chunk boundaries): replays need it. */
  seed: number;
  /** Milliseconds the original input took. */
  ms: number;
}

/** What one input did. */
export type Outcome =
  | { signature: string; ms: number }
  | { finding: { kind: string; message: string }; ms: number };

/** Runs one input through a target, turning any exception into a finding. */
export async function runInput(
  target: FuzzTarget,
  input: string,
  seed: number,
  budgetMs: number,
): Promise<Outcome> {
  const started = performance.now();
  try {
    const signature = await target.check(input, createRandom(seed));
    const ms = performance.now() - started;
    if (ms > budgetMs) {
      return {
        finding: { kind: "slow", message: `took ${Math.round(ms)} ms (budget ${budgetMs} ms)` },
        ms,
      };
    }
    return { signature, ms };
  } catch (error) {
    const ms = performance.now() - started;
    if (error instanceof FuzzFinding) {
      return { finding: { kind: error.kind, message: error.message }, ms };
    }
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return { finding: { kind: "exception", message: `check threw ${text}` }, ms };
  }
}

/** A finding's identity: the same kind and message shape count once. */
export function findingKey(target: string, kind: string, message: string): string {
  return `${target} ${kind} ${shape(message)}`;
}

/** Shrinks `input` by deleting runs while the same finding (by key) still shows. */
export async function minimize(
  target: FuzzTarget,
  input: string,
  seed: number,
  key: string,
  budgetMs: number,
  deadline: number,
  onInput?: (input: string) => void,
): Promise<string> {
  let best = input;
  for (let size = Math.max(1, best.length >> 1); size >= 1 && Date.now() < deadline; size >>= 1) {
    let at = 0;
    while (at < best.length && Date.now() < deadline) {
      const candidate = best.slice(0, at) + best.slice(at + size);
      onInput?.(candidate);
      const outcome = await runInput(target, candidate, seed, budgetMs);
      if (
        "finding" in outcome && outcome.finding.kind !== "slow" &&
        findingKey(target.name, outcome.finding.kind, outcome.finding.message) === key
      ) {
        best = candidate;
      } else {
        at += size;
      }
    }
  }
  return best;
}

/** Options of {@link fuzz}. */
export interface FuzzOptions {
  /** The seed inputs. */
  corpus: readonly string[];
  /** Seeds the mutations; the same seed and corpus give the same inputs. */
  seed: number;
  /** Stop at this time (ms epoch) … */
  deadline: number;
  /** … or after this many mutants, whichever comes first. */
  maxRuns?: number;
  /** An input taking longer than this is a "slow" finding. */
  budgetMs: number;
  /** Called before each input runs (the worker publishes it for the hang watchdog). */
  onInput?(input: string): void;
  /** Called once per distinct finding. */
  onFinding(finding: Finding): void;
}

/** What a fuzzing run did. */
export interface FuzzStats {
  runs: number;
  corpusSize: number;
  signatures: number;
  findings: number;
}

/** Largest number of inputs the corpus grows to. */
const MAX_CORPUS = 4000;

/** Runs the corpus, then mutants, until the deadline or `maxRuns`. */
export async function fuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzStats> {
  const random = createRandom(options.seed);
  const corpus = options.corpus.length > 0 ? [...options.corpus] : [""];
  const signatures = new Set<string>();
  const seen = new Set<string>();
  const stats: FuzzStats = { runs: 0, corpusSize: corpus.length, signatures: 0, findings: 0 };

  async function one(input: string, fromCorpus: boolean): Promise<void> {
    const seed = randomInt(random, 0, 0x7fffffff);
    options.onInput?.(input);
    const outcome = await runInput(target, input, seed, options.budgetMs);
    stats.runs++;
    if ("signature" in outcome) {
      if (!signatures.has(outcome.signature)) {
        signatures.add(outcome.signature);
        if (!fromCorpus && corpus.length < MAX_CORPUS) corpus.push(input);
      }
      return;
    }
    const { kind, message } = outcome.finding;
    const key = findingKey(target.name, kind, message);
    if (seen.has(key)) return;
    seen.add(key);
    stats.findings++;
    const shrunk = kind === "slow" ? input : await minimize(
      target,
      input,
      seed,
      key,
      options.budgetMs,
      Date.now() + 3000,
      options.onInput,
    );
    options.onFinding({
      target: target.name,
      kind,
      message,
      input: shrunk,
      original: input,
      seed,
      ms: Math.round(outcome.ms),
    });
  }

  for (const input of options.corpus) {
    if (Date.now() >= options.deadline) break;
    await one(input, true);
  }
  const maxRuns = options.maxRuns ?? Infinity;
  let mutants = 0;
  while (Date.now() < options.deadline && mutants < maxRuns) {
    const base = corpus[randomInt(random, 0, corpus.length - 1)];
    const other = corpus[randomInt(random, 0, corpus.length - 1)];
    await one(mutate(random, base, other, target), false);
    mutants++;
  }
  stats.corpusSize = corpus.length;
  stats.signatures = signatures.size;
  return stats;
}

/**
 * Reads a target's seed corpus: each file is one input (without a final newline), a `.lines`
 * file one input per non-empty line.
 */
export function readCorpus(directory: string): string[] {
  const inputs: string[] = [];
  let names: string[];
  try {
    names = [...Deno.readDirSync(directory)].filter((e) => e.isFile).map((e) => e.name).sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return inputs;
    throw error;
  }
  for (const name of names) {
    const text = Deno.readTextFileSync(`${directory}/${name}`);
    if (name.endsWith(".lines")) {
      inputs.push(...text.split("\n").filter((line) => line !== ""));
    } else {
      // Editors end files with a newline the input does not mean to have.
      inputs.push(text.endsWith("\n") ? text.slice(0, -1) : text);
    }
  }
  return inputs;
}
