// A node that cannot reach Redis does not start half-clustered: `lilt start` fails and says
// which option names the unreachable server.

import assert from "node:assert/strict";
import { runLilt } from "../../helpers/lilt_process.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";
import { nodeConfig } from "./nodes.ts";

/** A loopback port nothing listens on (bound, then closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("lilt start fails, naming cluster.redis_url, when Redis cannot be reached", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  const redisUrl = `redis://127.0.0.1:${closedPort()}`;
  const node = await nodeConfig("alpha", { postgresUrl: url, schema: schema.name, redisUrl });
  try {
    const out = await runLilt(["start", "-c", node.config]);
    assert.notEqual(out.code, 0);
    assert.match(
      out.stderr,
      new RegExp(`Cannot reach Redis at ${redisUrl} \\(cluster\\.redis_url\\)`),
    );
    assert.doesNotMatch(out.stderr, /lilt: serving/);
  } finally {
    await Deno.remove(node.dir, { recursive: true }).catch(() => {});
  }
});
