// Shared by the cluster tests: the configuration of one node of a test cluster (one PostgreSQL
// schema, one Redis, short heartbeats), a whole cluster started and torn down in one call,
// `lilt shell cluster show` read as JSON, and client logins that make a session available and
// interested as a real client does.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { type Broker, startRedis } from "../../helpers/brokers.ts";
import { type LiltProcess, runLilt, startLiltProcess } from "../../helpers/lilt_process.ts";
import { freshSchema, postgresUrl, type TestSchema } from "../../helpers/postgres.ts";
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

/** Options of {@link startCluster}. */
export interface StartClusterOptions {
  /** Accounts to create (password: `<user>-pw`) before any node starts. */
  users?: string[];
  /** The Redis password: the cluster's Redis requires it and every node reads it from a file. */
  redisPassword?: string;
  /** A Redis the test starts and stops itself (default: one started here, stopped at the end). */
  redisUrl?: string;
  /** Appended to every node's configuration (components, for example). */
  extraConfig?: string;
  /** Whether every node starts now, in the order named (default true). */
  start?: boolean;
}

/** A test cluster: one schema, one Redis, a configuration per node, and what it started. */
export interface TestCluster extends AsyncDisposable {
  /** The nodes' files, in the order named. */
  nodes: NodeSetup[];
  /** Every `lilt start` process started so far; stopped at the end. */
  processes: LiltProcess[];
  /** Clients to close at the end (those {@link TestCluster.login} opened, and any pushed). */
  clients: RawClient[];
  /** The Redis the nodes use. */
  redisUrl: string;
  /** Starts a node (again) and stops it at the end. */
  start(node: NodeSetup): Promise<LiltProcess>;
  /** {@link login} on a node, the client closed at the end. */
  login(node: LiltProcess, user: string, resource: string): Promise<RawClient>;
}

/**
 * A fresh PostgreSQL schema and Redis, a node configuration per name, the accounts, and (unless
 * `start: false`) a `lilt start` per node; disposing it closes the clients, stops the processes
 * and removes what it made. With `DEBUG_CLUSTER` set, the nodes' logs are printed at the end.
 *
 * @example
 * ```ts
 * await using cluster = await startCluster(["alpha", "beta"], { users: ["alice", "bob"] });
 * const [nodeA, nodeB] = cluster.processes;
 * const alice = await cluster.login(nodeA, "alice", "desk");
 * ```
 */
export async function startCluster(
  names: string[],
  options: StartClusterOptions = {},
): Promise<TestCluster> {
  const url = await postgresUrl();
  const schema: TestSchema = freshSchema(url);
  let redis: Broker | undefined;
  const nodes: NodeSetup[] = [];
  const processes: LiltProcess[] = [];
  const clients: RawClient[] = [];
  const dispose = async () => {
    if (Deno.env.get("DEBUG_CLUSTER")) { for (const p of processes) console.log(p.log); }
    for (const client of clients) client.close();
    for (const process of processes) await process.stop();
    for (const node of nodes) await Deno.remove(node.dir, { recursive: true }).catch(() => {});
    await redis?.stop();
    schema.drop();
  };
  try {
    let redisUrl = options.redisUrl;
    if (redisUrl === undefined) {
      const args = options.redisPassword === undefined
        ? []
        : ["--requirepass", options.redisPassword];
      redis = await startRedis({ args });
      redisUrl = redis.url;
    }
    const setup = {
      postgresUrl: url,
      schema: schema.name,
      redisUrl,
      redisPassword: options.redisPassword,
    };
    for (const name of names) {
      const node = await nodeConfig(name, setup);
      nodes.push(node);
      if (options.extraConfig) {
        await Deno.writeTextFile(node.config, options.extraConfig, { append: true });
      }
    }
    await addUsers(nodes[0], options.users ?? []);
    const cluster: TestCluster = {
      nodes,
      processes,
      clients,
      redisUrl,
      async start(node) {
        const process = await startLiltProcess(node.config);
        processes.push(process);
        return process;
      },
      async login(node, user, resource) {
        const client = await login(node.port, user, resource);
        clients.push(client);
        return client;
      },
      [Symbol.asyncDispose]: dispose,
    };
    if (options.start ?? true) { for (const node of nodes) await cluster.start(node); }
    return cluster;
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** A client's session as {@link seeEachOther} needs it: its node and its full JID. */
export interface PlacedSession {
  node: NodeSetup;
  client: RawClient;
  /** The full JID. */
  jid: string;
}

/**
 * Both clients send initial presence and get it back; then each node lists the other's session
 * as available, so what follows (subscriptions, messages) crosses nodes.
 */
export async function seeEachOther(a: PlacedSession, b: PlacedSession): Promise<void> {
  a.client.send("<presence/>");
  b.client.send("<presence/>");
  await a.client.next(isPresence(a.jid));
  await b.client.next(isPresence(b.jid));
  for (const [viewer, other] of [[a, b], [b, a]]) {
    const user = other.jid.split("@")[0];
    await untilShown(
      viewer.node,
      (nodes) => availableOn(nodes, other.node.name).includes(other.jid),
      `${viewer.node.name} to list ${user} available on ${other.node.name}`,
    );
  }
}
