// Shared by the cluster tests: the configuration of one node of a test cluster (one PostgreSQL
// schema, one Redis, short heartbeats), `lilt shell cluster show` read as JSON, and client
// logins that make a session available and interested as a real client does.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { runLilt } from "../../helpers/lilt_process.ts";
import { RawClient } from "../../helpers/raw_client.ts";

const MODULES = ["disco", "ping", "roster", "presence", "offline", "mam"];
/** Short, so the tests do not wait long for a dead node; no assertion is about speed. */
export const HEARTBEAT_S = 0.2;
export const NODE_TIMEOUT_S = 1;

/** One node's files. */
export interface NodeSetup {
  name: string;
  dir: string;
  config: string;
}

/** Where the nodes meet: the shared store and Redis. */
export interface ClusterSetup {
  postgresUrl: string;
  schema: string;
  redisUrl: string;
  /** Written to a 0600 file named by cluster.redis_password_file. */
  redisPassword?: string;
}

/** Writes a node's configuration in a fresh data directory. */
export async function nodeConfig(name: string, setup: ClusterSetup): Promise<NodeSetup> {
  const dir = await Deno.makeTempDir({ prefix: `lilt-cluster-${name}-` });
  const config = `${dir}/lilt.toml`;
  let password = "";
  if (setup.redisPassword !== undefined) {
    await Deno.writeTextFile(`${dir}/redis_password`, `${setup.redisPassword}\n`, { mode: 0o600 });
    await Deno.chmod(`${dir}/redis_password`, 0o600);
    password = 'redis_password_file = "redis_password"\n';
  }
  await Deno.writeTextFile(
    config,
    `data_dir = ${JSON.stringify(dir)}
modules = ${JSON.stringify(MODULES)}
c2s_interfaces = ["127.0.0.1:0"]
c2s_direct_tls_interfaces = []
scram_iterations = 4096
auth_failure_delay = 0

[log]
level = "info"

[storage]
driver = "postgresql"
url = ${JSON.stringify(setup.postgresUrl)}
schema = ${JSON.stringify(setup.schema)}

[cluster]
node = ${JSON.stringify(name)}
redis_url = ${JSON.stringify(setup.redisUrl)}
${password}heartbeat_interval = ${HEARTBEAT_S}
node_timeout = ${NODE_TIMEOUT_S}

[[host]]
domain = "localhost"
`,
  );
  return { name, dir, config };
}

/** Creates accounts (password: `<user>-pw`) through `lilt user add` on a node's config. */
export async function addUsers(node: NodeSetup, users: string[]): Promise<void> {
  for (const user of users) {
    const added = await runLilt(["user", "add", `${user}@localhost`, "-c", node.config], {
      stdin: `${user}-pw\n`,
    });
    assert.equal(added.code, 0, added.stderr);
  }
}

/** One node in `cluster show --json`. */
export interface NodeStatus {
  name: string;
  self: boolean;
  sessions: string[];
  /** The sessions that sent initial presence. */
  available: string[];
  lastHeartbeatAgoMs: number;
}

/** `lilt shell cluster show --json` against a node. */
export async function clusterShow(
  node: NodeSetup,
): Promise<{ node: string; nodes: NodeStatus[] }> {
  const out = await runLilt(["shell", "cluster", "show", "--json", "-c", node.config]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

/** Polls `cluster show` on a node until `check` accepts what it lists. */
export async function untilShown(
  node: NodeSetup,
  check: (nodes: NodeStatus[]) => boolean,
  what: string,
): Promise<NodeStatus[]> {
  const deadline = Date.now() + 15_000;
  let last: NodeStatus[] = [];
  while (Date.now() < deadline) {
    last = (await clusterShow(node)).nodes;
    if (check(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Timed out waiting for ${what}; cluster show: ${JSON.stringify(last)}`);
}

/** The full JIDs `cluster show` lists for a node. */
export function sessionsOf(nodes: NodeStatus[], name: string): string[] {
  return nodes.find((n) => n.name === name)?.sessions ?? [];
}

/** The available full JIDs `cluster show` lists for a node. */
export function availableOn(nodes: NodeStatus[], name: string): string[] {
  return nodes.find((n) => n.name === name)?.available ?? [];
}

/** Matches a presence from `from` of `type` (undefined: available). */
export function isPresence(from: string, type?: string): (el: Element) => boolean {
  return (el) => el.name === "presence" && el.attrs.from === from && el.attrs.type === type;
}

/** Logs in and requests the roster (an interested resource), as clients do after binding. */
export async function login(port: number, user: string, resource: string): Promise<RawClient> {
  const { client } = await RawClient.login(port, user, `${user}-pw`, resource);
  client.send(`<iq type='get' id='roster-${resource}'><query xmlns='jabber:iq:roster'/></iq>`);
  await client.next((el) => el.attrs.id === `roster-${resource}`);
  return client;
}

/** Mutual subscription between two accounts, each side answering on its own connection. */
export async function subscribeBoth(
  a: { client: RawClient; jid: string },
  b: { client: RawClient; jid: string },
): Promise<void> {
  for (const [asker, answerer] of [[a, b], [b, a]]) {
    asker.client.send(`<presence type='subscribe' to='${answerer.jid}'/>`);
    await answerer.client.next(isPresence(asker.jid, "subscribe"), 10_000);
    answerer.client.send(`<presence type='subscribed' to='${asker.jid}'/>`);
    await asker.client.next(isPresence(answerer.jid, "subscribed"), 10_000);
  }
}
