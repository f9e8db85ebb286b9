// `deno fmt --check` and `deno lint` are part of every change (DEVELOPERS.md); running them in the
// suite makes CI fail on an unformatted or lint-failing file instead of leaving it for later.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function deno(...args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
}

Deno.test("the tree is formatted (deno fmt --check)", async () => {
  const { code, output } = await deno("fmt", "--check");
  assert.equal(code, 0, `run scripts/deno fmt:\n${output}`);
});

Deno.test("the tree passes deno lint", async () => {
  const { code, output } = await deno("lint");
  assert.equal(code, 0, output);
});
