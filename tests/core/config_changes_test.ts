// What a configuration reload reports: joining, leaving or changing a cluster takes a restart,
// like the storage it needs.

import assert from "node:assert/strict";
import { parseConfigText } from "../../core/config.ts";
import { configChanges } from "../../core/config_changes.ts";

const BASE = '[storage]\ndriver = "postgresql"\nurl = "postgresql://lilt@db.example/lilt"\n';
const HOST = '[[host]]\ndomain = "a.example"\n';

function parse(text: string) {
  const { config, problems } = parseConfigText(text, "/etc/lilt/lilt.toml");
  assert.ok(config, JSON.stringify(problems));
  return config;
}

Deno.test("a [cluster] table added, changed or removed needs a restart, at its line", () => {
  const single = parse(BASE + HOST);
  const clustered = parse(
    BASE + '[cluster]\nnode = "n1"\nredis_url = "redis://127.0.0.1:6379/0"\n' + HOST,
  );
  const renamed = parse(
    BASE + '[cluster]\nnode = "n2"\nredis_url = "redis://127.0.0.1:6379/0"\n' + HOST,
  );
  assert.deepEqual(configChanges(single, clustered), [
    { option: "cluster", reload: "restart", line: 4 },
  ]);
  assert.deepEqual(configChanges(clustered, renamed).map((c) => c.option), ["cluster"]);
  assert.deepEqual(configChanges(clustered, single).map((c) => [c.option, c.reload]), [[
    "cluster",
    "restart",
  ]]);
  assert.deepEqual(configChanges(clustered, clustered), []);
});
