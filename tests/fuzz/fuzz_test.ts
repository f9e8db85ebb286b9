// Tests of the fuzzer (scripts/fuzz) in the default suite: each target's seed corpus and a fixed
// set of its mutants pass every check, the saxes differential judges known documents as
// documented, and the engine reports and shrinks a planted bug. The timed 60 s run is CI's
// (scripts/test with CI=true).

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type Finding, fuzz, readCorpus } from "./engine.ts";
import { FuzzFinding, type FuzzTarget } from "./target.ts";
import { TARGETS } from "./targets.ts";
import { checkDifferential } from "./xml_target.ts";

const CORPUS = fileURLToPath(new URL("./corpus/", import.meta.url));
/** No input may take this long: a budget that only a hang reaches, never a timing assertion. */
const NO_BUDGET = 600_000;

for (const [name, target] of Object.entries(TARGETS)) {
  Deno.test(`fuzz target ${name}: the corpus and 2000 mutants break no property`, async () => {
    const corpus = readCorpus(`${CORPUS}${name}`);
    assert.ok(corpus.length > 0, `tests/fuzz/corpus/${name} holds inputs`);
    const findings: Finding[] = [];
    const stats = await fuzz(target, {
      corpus,
      seed: 20261207,
      deadline: Date.now() + NO_BUDGET,
      maxRuns: 2000,
      budgetMs: NO_BUDGET,
      onFinding: (finding) => findings.push(finding),
    });
    assert.deepEqual(findings, []);
    assert.equal(stats.runs, corpus.length + 2000);
  });
}

Deno.test("the saxes differential compares well-formedness and skips what Lilt refuses by design", () => {
  assert.equal(
    checkDifferential("<a xmlns='urn:a'><b x='1'>t&amp;<![CDATA[<x>]]></b></a>"),
    "both-accept",
  );
  for (
    const refused of [
      "<a><b></a>",
      "<a x='1' x='2'/>",
      "<p:a/>",
      "<a xmlns:p=''/>",
      "<a>&nbsp;</a>",
      "<a>&#0;</a>",
      "<a/><b/>",
      "text<a/>",
      "<a>]]></a>",
    ]
  ) {
    assert.equal(checkDifferential(refused), "both-refuse", refused);
  }
  // Refused by Lilt by design (RFC 6120 §11.1), accepted by saxes: not compared.
  for (
    const skipped of [
      "<!-- c --><a/>",
      "<?xml version='1.0'?><a/>",
      "<!DOCTYPE a><a/>",
      "<a><?pi x?></a>",
    ]
  ) {
    assert.equal(checkDifferential(skipped), "skip", skipped);
  }
  assert.equal(checkDifferential("<p:3x xmlns:p='urn:p'/>"), "lilt-stricter-qname");
});

Deno.test("the engine reports a planted bug once, shrunk to what shows it", async () => {
  const planted: FuzzTarget = {
    name: "planted",
    maxLength: 200,
    dictionary: ["!", "?"],
    check(input) {
      if (input.includes("!?")) throw new TypeError("planted");
      if (input.includes("?!")) throw new FuzzFinding("invariant", "planted invariant");
      return input.length > 3 ? "long" : "short";
    },
  };
  const findings: Finding[] = [];
  await fuzz(planted, {
    corpus: ["hello world", "??!!"],
    seed: 1,
    deadline: Date.now() + NO_BUDGET,
    maxRuns: 3000,
    budgetMs: NO_BUDGET,
    onFinding: (finding) => findings.push(finding),
  });
  const byKind = Object.fromEntries(findings.map((f) => [f.kind, f]));
  assert.deepEqual(Object.keys(byKind).sort(), ["exception", "invariant"]);
  assert.equal(byKind.invariant.input, "?!");
  assert.equal(byKind.exception.input, "!?");
  assert.match(byKind.exception.message, /TypeError: planted/);
});
