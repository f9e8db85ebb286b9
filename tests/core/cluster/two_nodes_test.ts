// Two `lilt start` processes serving one domain (issue 19), as an operator runs them: one
// PostgreSQL schema and one Redis, all started by the test. Clients on different nodes
// subscribe to each other, exchange messages and presence; `cluster show` lists both nodes;
// a node killed with SIGKILL is noticed by the other, which tells its clients, and the killed
// node's client logs in again on the survivor and finds its roster and offline message.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { startRedis } from "../../helpers/brokers.ts";
import { type LiltProcess, runLilt, startLiltProcess } from "../../helpers/lilt_process.ts";
import { freshSchema, postgresUrl } from "../../helpers/postgres.ts";
import { RawClient, roundTrip } from "../../helpers/raw_client.ts";

const MODULES = ["disco", "ping", "roster", "presence", "offline"];
/** Short, so the test does not wait long for a dead node; no assertion is about speed. */
const HEARTBEAT_S = 0.2;
const NODE_TIMEOUT_S = 1;

interface NodeSetup {
  name: string;
  dir: string;
  config: string;
}

async function nodeConfig(
  name: string,
  storage: { url: string; schema: string },
  redisUrl: string,
): Promise<NodeSetup> {
  const dir = await Deno.makeTempDir({ prefix: `lilt-cluster-${name}-` });
  const config = `${dir}/lilt.toml`;
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
url = ${JSON.stringify(storage.url)}
schema = ${JSON.stringify(storage.schema)}

[cluster]
node = ${JSON.stringify(name)}
redis_url = ${JSON.stringify(redisUrl)}
heartbeat_interval = ${HEARTBEAT_S}
node_timeout = ${NODE_TIMEOUT_S}

[[host]]
domain = "localhost"
`,
  );
  return { name, dir, config };
}

interface NodeStatus {
  name: string;
  self: boolean;
  sessions: string[];
  lastHeartbeatAgoMs: number;
}

/** `lilt shell cluster show --json` against a node. */
async function clusterShow(node: NodeSetup): Promise<{ node: string; nodes: NodeStatus[] }> {
  const out = await runLilt(["shell", "cluster", "show", "--json", "-c", node.config]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

/** Polls `cluster show` on a node until `check` accepts what it lists. */
async function untilShown(
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

function sessionsOf(nodes: NodeStatus[], name: string): string[] {
  return nodes.find((n) => n.name === name)?.sessions ?? [];
}

const isPresence = (from: string, type?: string) => (el: Element) =>
  el.name === "presence" && el.attrs.from === from && el.attrs.type === type;

async function login(port: number, user: string, resource: string): Promise<RawClient> {
  const { client } = await RawClient.login(port, user, `${user}-pw`, resource);
  // Interested (roster requested) and available: what a client does after binding.
  client.send(`<iq type='get' id='roster-${resource}'><query xmlns='jabber:iq:roster'/></iq>`);
  await client.next((el) => el.attrs.id === `roster-${resource}`);
  return client;
}

/** Mutual subscription, each side answering on its own node. */
async function subscribeBoth(alice: RawClient, bob: RawClient): Promise<void> {
  for (
    const [asker, askerJid, answerer, answererJid] of [
      [alice, "alice@localhost", bob, "bob@localhost"],
      [bob, "bob@localhost", alice, "alice@localhost"],
    ] as const
  ) {
    asker.send(`<presence type='subscribe' to='${answererJid}'/>`);
    await answerer.next(isPresence(askerJid, "subscribe"), 10_000);
    answerer.send(`<presence type='subscribed' to='${askerJid}'/>`);
    await asker.next(isPresence(answererJid, "subscribed"), 10_000);
  }
}

Deno.test("two nodes serve one domain: messages and presence cross nodes, a killed node's client moves to the survivor", async () => {
  const url = await postgresUrl();
  using schema = freshSchema(url);
  await using redis = await startRedis();
  const storage = { url, schema: schema.name };
  const alpha = await nodeConfig("alpha", storage, redis.url);
  const beta = await nodeConfig("beta", storage, redis.url);
  const processes: LiltProcess[] = [];
  const clients: RawClient[] = [];
  try {
    for (const user of ["alice", "bob"]) {
      const added = await runLilt(["user", "add", `${user}@localhost`, "-c", alpha.config], {
        stdin: `${user}-pw\n`,
      });
      assert.equal(added.code, 0, added.stderr);
    }
    const nodeA = await startLiltProcess(alpha.config);
    processes.push(nodeA);
    const nodeB = await startLiltProcess(beta.config);
    processes.push(nodeB);

    const alice = await login(nodeA.port, "alice", "desk");
    clients.push(alice);
    const bob = await login(nodeB.port, "bob", "phone");
    clients.push(bob);
    alice.send("<presence/>");
    bob.send("<presence/>");
    await alice.next(isPresence("alice@localhost/desk"));
    await bob.next(isPresence("bob@localhost/phone"));

    // Each node learns of the other's session through Redis.
    const shown = await untilShown(
      alpha,
      (nodes) =>
        sessionsOf(nodes, "beta").includes("bob@localhost/phone") &&
        sessionsOf(nodes, "alpha").includes("alice@localhost/desk"),
      "alpha to list bob on beta",
    );
    assert.deepEqual(shown.map((n) => [n.name, n.self]), [["alpha", true], ["beta", false]]);
    await untilShown(
      beta,
      (nodes) => sessionsOf(nodes, "alpha").includes("alice@localhost/desk"),
      "beta to list alice on alpha",
    );

    // Subscriptions both ways, answered across nodes; then each sees the other's presence.
    await subscribeBoth(alice, bob);
    await alice.next(isPresence("bob@localhost/phone"), 10_000);
    await bob.next(isPresence("alice@localhost/desk"), 10_000);

    // Messages to the full and to the bare JID.
    alice.send(
      "<message to='bob@localhost/phone' type='chat' id='m1'><body>to your phone</body></message>",
    );
    const m1 = await bob.next((el) => el.name === "message" && el.attrs.id === "m1", 10_000);
    assert.equal(m1.attrs.from, "alice@localhost/desk");
    assert.equal(m1.getChildText("body"), "to your phone");
    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>to you</body></message>");
    const m2 = await alice.next((el) => el.name === "message" && el.attrs.id === "m2", 10_000);
    assert.equal(m2.attrs.from, "bob@localhost/phone");

    // A presence change reaches the contact on the other node.
    alice.send("<presence><show>away</show><status>lunch</status></presence>");
    const away = await bob.next(
      (el) => isPresence("alice@localhost/desk")(el) && el.getChildText("show") === "away",
      10_000,
    );
    assert.equal(away.getChildText("status"), "lunch");

    // The shell on beta lists both nodes and their sessions, beta marked.
    const fromBeta = await clusterShow(beta);
    assert.equal(fromBeta.node, "beta");
    assert.deepEqual(
      fromBeta.nodes.map((n) => [n.name, n.self, n.sessions]),
      [["beta", true, ["bob@localhost/phone"]], ["alpha", false, ["alice@localhost/desk"]]],
    );
    const table = await runLilt(["shell", "cluster", "show", "-c", beta.config]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^beta\s+\*\s+now/m);
    assert.match(table.stdout, /^alpha\s+\S/m);
    assert.match(table.stdout, /alice@localhost\/desk/);
    const help = await runLilt(["shell", "help", "-c", beta.config]);
    assert.match(help.stdout, /^\s*cluster\s+show$/m);

    // alpha dies without a word: bob hears that alice is gone once alpha times out.
    nodeA.process.kill("SIGKILL");
    await nodeA.process.status;
    await bob.next(isPresence("alice@localhost/desk", "unavailable"), 15_000);
    await untilShown(beta, (nodes) => nodes.length === 1, "beta to drop alpha");
    // bob's node keeps serving: a message to alice now waits offline.
    bob.send("<message to='alice@localhost' type='chat' id='m3'><body>while away</body></message>");
    await roundTrip(bob);

    // alice logs in on beta: her roster and the offline message are there.
    const again = await RawClient.login(nodeB.port, "alice", "alice-pw", "laptop");
    clients.push(again.client);
    const aliceAgain = again.client;
    aliceAgain.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
    const roster = await aliceAgain.next((el) => el.attrs.id === "r2");
    const item = roster.getChild("query")?.getChildren("item").find((i) =>
      i.attrs.jid === "bob@localhost"
    );
    assert.equal(item?.attrs.subscription, "both");
    aliceAgain.send("<presence/>");
    const m3 = await aliceAgain.next(
      (el) => el.name === "message" && el.getChildText("body") === "while away",
      10_000,
    );
    assert.equal(m3.attrs.from, "bob@localhost/phone");
    // And bob sees alice back, now on his own node.
    await bob.next(isPresence("alice@localhost/laptop"), 10_000);
  } finally {
    if (Deno.env.get("DEBUG_CLUSTER")) { for (const p of processes) console.log(p.log); }
    for (const client of clients) client.close();
    for (const process of processes) await process.stop();
    for (const node of [alpha, beta]) {
      await Deno.remove(node.dir, { recursive: true }).catch(() => {});
    }
  }
});
