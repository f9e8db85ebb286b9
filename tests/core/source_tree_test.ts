// sourceTreeRoot: the checkout when Lilt runs from source, nothing when it runs packaged (the
// bundle's modules all carry the bundle's URL), so packaged runs never look beside their files.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { sourceTreeRoot } from "../../core/source_tree.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

Deno.test("run from source, the root is the checkout's directory", () => {
  assert.equal(sourceTreeRoot(), ROOT);
  assert.equal(sourceTreeRoot("file:///opt/lilt/core/source_tree.ts"), "/opt/lilt");
});

Deno.test("a bundle or any other place of the code has no source tree", () => {
  assert.equal(sourceTreeRoot("file:///usr/local/libexec/lilt/lilt.js"), undefined);
  assert.equal(sourceTreeRoot("https://example.com/lilt/core/source_tree.ts"), undefined);
  assert.equal(sourceTreeRoot("file:///opt/lilt/core/source_tree.tsx"), undefined);
});
