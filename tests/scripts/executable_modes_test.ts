// The commands a newcomer and CI run (scripts/lilt, scripts/test, .ci/run, ...) must keep their
// executable bit in git: a commit that drops it leaves a fresh clone unable to run them.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("every script with a #! line is committed executable", async () => {
  const listing = await new Deno.Command("git", {
    args: ["ls-files", "-s", "scripts", ".ci", "packaging"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!listing.success) {
    console.log("not a git checkout: nothing to check");
    return;
  }
  const wrong: string[] = [];
  for (const line of new TextDecoder().decode(listing.stdout).split("\n")) {
    const match = /^(\d{6}) \S+ \d+\t(.+)$/.exec(line);
    if (!match) continue;
    const [, mode, path] = match;
    if (path.endsWith(".ts") || path.endsWith(".json")) continue;
    const head = await Deno.open(`${ROOT}${path}`).then(async (file) => {
      const bytes = new Uint8Array(2);
      const n = await file.read(bytes);
      file.close();
      return n === 2 ? new TextDecoder().decode(bytes) : "";
    }).catch(() => "");
    if (head === "#!" && mode !== "100755") wrong.push(`${path} (${mode})`);
  }
  assert.deepEqual(wrong, [], `run: git update-index --chmod=+x ${wrong.join(" ")}`);
});
