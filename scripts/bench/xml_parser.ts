// Measures the stream parser against saxes on realistic XMPP traffic, so claims about parser
// speed (PLATFORM.md §8) can be re-checked: deno run --allow-all scripts/bench/xml_parser.ts

import { parseArgs } from "node:util";
import { SaxesParser } from "saxes";
import { StreamParser } from "../../core/xml/parser.ts";
import { buildCorpus, STREAM_FOOTER, streamHeader } from "../../tests/core/xml/corpus.ts";

/** The plain tree saxes builds, shaped like an Element. */
interface PlainElement {
  name: string;
  ns: string;
  attrs: Record<string, string>;
  children: (PlainElement | string)[];
  parent: PlainElement | undefined;
}

/** One parser under test: consumes all chunks and returns the number of stanzas it built. */
type Runner = (chunks: Uint8Array[]) => number;

function runOurs(chunks: Uint8Array[]): number {
  let stanzas = 0;
  let failure: Error | undefined;
  const parser = new StreamParser({
    streamOpen() {},
    stanza() {
      stanzas++;
    },
    streamClose() {},
    error(error) {
      failure = error;
    },
  });
  for (const chunk of chunks) parser.feed(chunk);
  if (failure) throw failure;
  return stanzas;
}

function runSaxes(chunks: Uint8Array[]): number {
  let stanzas = 0;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const parser = new SaxesParser({ xmlns: true });
  const stack: PlainElement[] = [];
  const addText = (text: string) => {
    if (stack.length >= 2) stack[stack.length - 1].children.push(text);
  };
  parser.on("opentag", (tag) => {
    const attrs: Record<string, string> = {};
    for (const name in tag.attributes) {
      if (name !== "xmlns") attrs[name] = tag.attributes[name].value;
    }
    const parent = stack.length >= 2 ? stack[stack.length - 1] : undefined;
    const el: PlainElement = { name: tag.local, ns: tag.uri, attrs, children: [], parent };
    if (parent) parent.children.push(el);
    stack.push(el);
  });
  parser.on("closetag", () => {
    stack.pop();
    if (stack.length === 1) stanzas++;
  });
  parser.on("text", addText);
  parser.on("cdata", addText);
  parser.on("error", (error) => {
    throw error;
  });
  for (const chunk of chunks) parser.write(decoder.decode(chunk, { stream: true }));
  return stanzas;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs each parser `warmups` times, then `runs` rounds in which every parser runs once, so
 * drifts in machine speed hit all of them alike; returns the median time of each.
 */
function measure(runners: Runner[], chunks: Uint8Array[], warmups: number, runs: number) {
  const stanzas = runners.map(() => 0);
  const times: number[][] = runners.map(() => []);
  for (let i = 0; i < warmups; i++) runners.forEach((runner, j) => stanzas[j] = runner(chunks));
  for (let i = 0; i < runs; i++) {
    runners.forEach((runner, j) => {
      const start = performance.now();
      stanzas[j] = runner(chunks);
      times[j].push(performance.now() - start);
    });
  }
  return runners.map((_, j) => ({ ms: median(times[j]), stanzas: stanzas[j] }));
}

function main(): void {
  const args = parseArgs({
    args: Deno.args,
    options: {
      mb: { type: "string", default: "10" },
      runs: { type: "string", default: "11" },
      warmups: { type: "string", default: "3" },
      chunk: { type: "string", default: "4096" },
    },
  });
  const megabytes = Number(args.values.mb);
  const runs = Number(args.values.runs);
  const warmups = Number(args.values.warmups);
  const chunkSize = Number(args.values.chunk);

  const bytes = new TextEncoder().encode(
    streamHeader() + buildCorpus(megabytes, 1) + STREAM_FOOTER,
  );
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  const mb = bytes.length / (1024 * 1024);

  const [ours, saxes] = measure([runOurs, runSaxes], chunks, warmups, runs);
  if (ours.stanzas !== saxes.stanzas) {
    throw new Error(
      `Expected both parsers to see the same stanzas, found ${ours.stanzas} and ${saxes.stanzas}`,
    );
  }
  const rows = [
    { parser: "lilt StreamParser (Element trees)", ...ours },
    { parser: "saxes 6.0.0 xmlns:true (plain trees)", ...saxes },
  ];
  console.log(
    `${mb.toFixed(2)} MiB, ${ours.stanzas} stanzas, ${chunkSize}-byte chunks, ` +
      `median of ${runs} interleaved runs after ${warmups} warm-ups (Deno ${Deno.version.deno})`,
  );
  console.log("| parser | MB/s | µs/stanza |");
  console.log("|---|---|---|");
  for (const row of rows) {
    console.log(
      `| ${row.parser} | ${(mb / (row.ms / 1000)).toFixed(1)} | ${
        (row.ms * 1000 / row.stanzas).toFixed(2)
      } |`,
    );
  }
  const ratio = saxes.ms / ours.ms;
  console.log(`ratio ours/saxes (throughput): ${ratio.toFixed(2)}x`);
  console.log(JSON.stringify({
    bench: "xml_parser",
    mib: Number(mb.toFixed(3)),
    stanzas: ours.stanzas,
    chunkBytes: chunkSize,
    runs,
    oursMBps: Number((mb / (ours.ms / 1000)).toFixed(2)),
    saxesMBps: Number((mb / (saxes.ms / 1000)).toFixed(2)),
    oursUsPerStanza: Number((ours.ms * 1000 / ours.stanzas).toFixed(3)),
    saxesUsPerStanza: Number((saxes.ms * 1000 / saxes.stanzas).toFixed(3)),
    ratio: Number(ratio.toFixed(2)),
  }));
}

if (import.meta.main) main();
