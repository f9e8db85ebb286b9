// The [cluster] table: its defaults, the shared store it requires, a Redis URL without password
// beside a 0600 password file, and each problem reported at its file:line.

import assert from "node:assert/strict";
import { formatProblem, parseConfigText } from "../../../core/config.ts";

const POSTGRES = '[storage]\ndriver = "postgresql"\nurl = "postgresql://lilt@db.example/lilt"\n';
const HOST = '[[host]]\ndomain = "a"\n';

function problemsOf(text: string, file = "/etc/lilt/lilt.toml"): string[] {
  return parseConfigText(text, file).problems.map(formatProblem);
}

Deno.test("no [cluster] table: a single node", () => {
  const { config } = parseConfigText(POSTGRES + HOST, "/etc/lilt/lilt.toml");
  assert.equal(config!.cluster, undefined);
});

Deno.test("[cluster] defaults: the host name, a 2 s heartbeat, a 10 s node timeout", () => {
  const { config, problems } = parseConfigText(
    POSTGRES + '[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n' + HOST,
    "/etc/lilt/lilt.toml",
  );
  assert.deepEqual(problems, []);
  assert.deepEqual(config!.cluster, {
    node: Deno.hostname(),
    redis_url: "redis://127.0.0.1:6379/0",
    redis_password_file: "",
    password: "",
    heartbeat_interval: 2,
    node_timeout: 10,
  });
});

Deno.test("[cluster] takes a name, intervals and a 0600 password file the shell never shows", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/redis_password`, "r3dis\n", { mode: 0o600 });
    Deno.chmodSync(`${dir}/redis_password`, 0o600);
    const { config, problems } = parseConfigText(
      POSTGRES +
        '[cluster]\nnode = "xmpp-2"\nredis_url = "redis://redis.example:6380/2"\n' +
        'redis_password_file = "redis_password"\nheartbeat_interval = 0.5\nnode_timeout = 3\n' +
        HOST,
      `${dir}/lilt.toml`,
    );
    assert.deepEqual(problems, []);
    const cluster = config!.cluster!;
    assert.equal(cluster.node, "xmpp-2");
    assert.equal(cluster.password, "r3dis");
    assert.equal(cluster.redis_password_file, `${dir}/redis_password`);
    assert.equal(cluster.heartbeat_interval, 0.5);
    assert.equal(cluster.node_timeout, 3);
    const shown = JSON.stringify(config!.valueOf("cluster"));
    assert.ok(shown.includes("redis.example") && !shown.includes("r3dis"), shown);

    Deno.chmodSync(`${dir}/redis_password`, 0o644);
    const open = problemsOf(
      POSTGRES + '[cluster]\nredis_url = "redis://h"\nredis_password_file = "redis_password"\n' +
        HOST,
      `${dir}/lilt.toml`,
    );
    assert.match(open[0], /cluster\.redis_password_file .* chmod 600/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("[cluster] problems name the file and line", () => {
  // Each node's own embedded file would split the accounts between nodes.
  assert.deepEqual(problemsOf('[cluster]\nredis_url = "redis://h"\n' + HOST), [
    '/etc/lilt/lilt.toml:1: error: a [cluster] table needs storage.driver = "postgresql": the ' +
    "nodes must share one store",
  ]);
  const at = (text: string) => problemsOf(POSTGRES + text + HOST);
  assert.deepEqual(at('[cluster]\nnode = "a"\n'), [
    "/etc/lilt/lilt.toml:4: error: a [cluster] table needs cluster.redis_url",
  ]);
  assert.match(
    at('[cluster]\nredis_url = "redis://:secret@h:6379"\n')[0],
    /lilt\.toml:5: error: option 'cluster\.redis_url' must not hold the password/,
  );
  assert.match(
    at('[cluster]\nredis_url = "nats://h:4222"\n')[0],
    /:5: error: option 'cluster\.redis_url' must look like redis:\/\//,
  );
  assert.match(
    at('[cluster]\nredis_url = "redis://h"\nnode = "a b"\n')[0],
    /:6: error: option 'cluster\.node' must be 1 to 64 letters/,
  );
  assert.match(
    at('[cluster]\nredis_url = "redis://h"\nheartbeat_interval = 5\nnode_timeout = 5\n')[0],
    /:7: error: option 'cluster\.node_timeout' must be longer than cluster\.heartbeat_interval/,
  );
  assert.match(
    at('[cluster]\nredis_url = "redis://h"\nheartbeat = 1\n')[0],
    /:6: warning: unknown option 'cluster\.heartbeat'/,
  );
  assert.match(
    at('[cluster]\nredis_url = "redis://h"\nnode_timeout = "10"\n')[0],
    /:6: error: option 'cluster\.node_timeout' must be a number/,
  );
});
