// The fuzzer's command line (run through scripts/fuzz): fuzzes the XML stream parser, the JID
// parser, SASL message parsing and the config loader for a bounded time, each target in a
// worker watched for hangs, seeded from tests/fuzz/corpus/<target>/. Findings are printed and
// saved (one JSON file each) and make the exit status 1.

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type Finding, findingKey, readCorpus, runInput } from "./engine.ts";
import { TARGETS } from "./targets.ts";
import { SHARED_HEADER_BYTES, type WorkerReport, type WorkerStart } from "./worker.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const USAGE = `Usage: scripts/fuzz [--seconds N] [--target xml|jid|sasl|config|all] [--seed N]
                    [--budget-ms N] [--findings DIR]
       scripts/fuzz --replay FINDING.json

Fuzzes for N seconds in all (default 60), split evenly between the targets. An input taking more
than the budget (default 2000 ms) is a finding; one that does not finish within the budget plus
2 s is a hang (its worker is stopped and a new one goes on). Findings are saved as JSON files in
DIR (default tests/fuzz/findings/) and printed; the exit status is then 1. --replay runs a saved
finding's input again and prints what it does now.`;

const HANG_GRACE_MS = 2000;
/** Largest input the shared buffer holds for the hang watchdog, in UTF-16 units. */
const SHARED_UNITS = 1 << 20;

function fail(message: string): never {
  console.error(`fuzz: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function integer(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    fail(`expected ${name} to be an integer >= ${min}, found '${value}'`);
  }
  return n;
}

function clip(text: string, max = 300): string {
  const json = JSON.stringify(text);
  return json.length > max ? `${json.slice(0, max)}… (${text.length} chars)` : json;
}

async function save(directory: string, finding: Finding): Promise<string> {
  await Deno.mkdir(directory, { recursive: true });
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(finding.original)),
  );
  const id = Array.from(digest.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
  const path = `${directory}/${finding.target}-${finding.kind}-${id}.json`;
  await Deno.writeTextFile(path, JSON.stringify(finding, null, 2) + "\n");
  return path;
}

function print(finding: Finding, path: string): void {
  console.log(`FINDING ${finding.target} ${finding.kind}: ${finding.message}`);
  console.log(`  input: ${clip(finding.input)}`);
  if (finding.input !== finding.original) console.log(`  as found: ${clip(finding.original)}`);
  console.log(`  seed ${finding.seed}, ${finding.ms} ms; saved to ${path}`);
}

/** Runs one target in workers until `deadline`, restarting after a hang. */
async function fuzzTarget(
  name: string,
  seed: number,
  deadline: number,
  budgetMs: number,
  onFinding: (finding: Finding) => Promise<void>,
): Promise<{ runs: number; corpus: number; grown: number; signatures: number }> {
  const corpus = readCorpus(`${HERE}corpus/${name}`);
  const totals = { runs: 0, corpus: corpus.length, grown: corpus.length, signatures: 0 };
  let round = 0;
  while (Date.now() < deadline) {
    const shared = new SharedArrayBuffer(SHARED_HEADER_BYTES + 2 * SHARED_UNITS);
    const header = new Int32Array(shared, 0, 2);
    const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
    const pending: Promise<void>[] = [];
    const report = new Promise<WorkerReport | "hang">((resolve) => {
      worker.onmessage = (event: MessageEvent<WorkerReport>) => {
        const message = event.data;
        if (message.type === "finding") pending.push(onFinding(message.finding));
        else resolve(message);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        resolve({ type: "failed", error: event.message });
      };
      // The watchdog: the input counter must move within the budget plus a grace period.
      let last = -1;
      let since = Date.now();
      const watchdog = setInterval(() => {
        const count = Atomics.load(header, 0);
        if (count === 0) {
          since = Date.now(); // still loading: no input under way
        } else if (count !== last) {
          last = count;
          since = Date.now();
        } else if (Date.now() - since > budgetMs + HANG_GRACE_MS) {
          clearInterval(watchdog);
          resolve("hang");
        }
      }, 100);
      worker.addEventListener("message", (event) => {
        if ((event as MessageEvent<WorkerReport>).data.type !== "finding") clearInterval(watchdog);
      });
      worker.addEventListener("error", () => clearInterval(watchdog));
    });
    const start: WorkerStart = {
      target: name,
      corpus,
      seed: seed + round++,
      deadline,
      budgetMs,
      shared,
    };
    worker.postMessage(start);
    const outcome = await report;
    worker.terminate();
    await Promise.all(pending);
    if (outcome === "hang") {
      const length = Atomics.load(header, 1);
      const units = new Uint16Array(shared, SHARED_HEADER_BYTES, length);
      let input = "";
      for (let i = 0; i < length; i += 4096) {
        input += String.fromCharCode(...units.subarray(i, i + 4096));
      }
      await onFinding({
        target: name,
        kind: "hang",
        message: `no answer within ${budgetMs + HANG_GRACE_MS} ms`,
        input,
        original: input,
        seed: 0,
        ms: budgetMs + HANG_GRACE_MS,
      });
      totals.runs += Atomics.load(header, 0);
      continue;
    }
    if (outcome.type !== "done") {
      await onFinding({
        target: name,
        kind: "harness",
        message: `the worker failed: ${outcome.type === "failed" ? outcome.error : outcome.type}`,
        input: "",
        original: "",
        seed: 0,
        ms: 0,
      });
      break;
    }
    totals.runs += outcome.runs;
    totals.grown = outcome.corpusSize;
    totals.signatures = outcome.signatures;
  }
  return totals;
}

async function replay(path: string): Promise<number> {
  const finding = JSON.parse(await Deno.readTextFile(path)) as Finding;
  const target = TARGETS[finding.target];
  if (target === undefined) fail(`unknown target '${finding.target}' in ${path}`);
  let status = 0;
  for (const [what, input] of [["input", finding.input], ["as found", finding.original]]) {
    const outcome = await runInput(target, input, finding.seed, 60_000);
    if ("finding" in outcome) {
      status = 1;
      console.log(`${what}: ${outcome.finding.kind}: ${outcome.finding.message}`);
    } else {
      console.log(`${what}: no finding now (${outcome.signature}, ${Math.round(outcome.ms)} ms)`);
    }
  }
  return status;
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: Deno.args,
      options: {
        seconds: { type: "string" },
        target: { type: "string" },
        seed: { type: "string" },
        "budget-ms": { type: "string" },
        findings: { type: "string" },
        replay: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args.replay !== undefined) return await replay(args.replay);
  const seconds = integer(args.seconds, "--seconds", 60, 1);
  const budgetMs = integer(args["budget-ms"], "--budget-ms", 2000, 10);
  const seed = integer(args.seed, "--seed", Math.floor(Math.random() * 0x7fffffff), 0);
  const chosen = args.target ?? "all";
  const names = chosen === "all" ? Object.keys(TARGETS) : [chosen];
  if (!(chosen === "all" || chosen in TARGETS)) fail(`unknown target '${chosen}'`);
  const directory = args.findings ?? `${HERE}findings`;

  console.log(`fuzz: ${names.join(", ")} for ${seconds} s, seed ${seed}`);
  const findings: Finding[] = [];
  const reported = new Set<string>();
  const started = Date.now();
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const left = seconds * 1000 - (Date.now() - started);
    const deadline = Date.now() + Math.max(left / (names.length - i), 1000);
    const before = findings.length;
    const totals = await fuzzTarget(name, seed, deadline, budgetMs, async (finding) => {
      // A worker started again after a hang does not know what the one before it reported.
      const key = finding.kind === "hang"
        ? `${name} hang ${finding.input}`
        : findingKey(name, finding.kind, finding.message);
      if (reported.has(key)) return;
      reported.add(key);
      findings.push(finding);
      print(finding, await save(directory, finding));
    });
    console.log(
      `fuzz ${name}: ${totals.runs} inputs, corpus ${totals.corpus} -> ${totals.grown}, ` +
        `${totals.signatures} behaviours, ${findings.length - before} findings`,
    );
  }
  console.log(
    `fuzz: ${findings.length} findings in ${Math.round((Date.now() - started) / 1000)} s` +
      (findings.length > 0 ? ` (saved in ${directory})` : ""),
  );
  return findings.length > 0 ? 1 : 0;
}

Deno.exit(await main());
