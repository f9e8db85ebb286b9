// The admin shell's `pubsub` section against a running server: each command on the
// `pubsub.localhost` component (with what subscribers see on the wire), its errors, an account's
// PEP service, and one-shot `lilt shell pubsub ... --json` over a real admin socket.

import assert from "node:assert/strict";
import type { CommandResult } from "../../core/admin_commands.ts";
import type { ModuleAPI } from "../../core/modules.ts";
import type { Element } from "../../core/xml/element.ts";
import { serialize } from "../../core/xml/serializer.ts";
import { builtinModules } from "../../mod/builtin.ts";
import { defaultNodeConfig } from "../../mod/pubsub/config.ts";
import { PubsubService } from "../../mod/pubsub/service.ts";
import { PUBSUB_COMMANDS } from "../../mod/pubsub/shell.ts";
import { PubsubStore } from "../../mod/pubsub/storage.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText, type TestServer } from "../helpers/test_server.ts";
import { runLilt } from "../helpers/lilt_process.ts";

const PS = "http://jabber.org/protocol/pubsub";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const SERVICE = "pubsub.localhost";
/** Every built-in module but a real PEP module, which the stand-in below replaces. */
// Without pep, and without the modules built on it (their dependency would load it).
const MODULES = Object.keys(builtinModules).filter((name) =>
  name !== "pep" && !builtinModules[name].depends?.includes("pep")
);

async function start(extra = ""): Promise<TestServer> {
  return await startTestServer({
    users: { alice: "pw", bob: "pw" },
    modules: MODULES,
    extraToml: `[[component]]\ndomain = "${SERVICE}"\nmodules = ["disco", "pubsub"]\n${extra}`,
  });
}

async function pubsubCommand(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("pubsub", name);
  assert.ok(spec, `the command pubsub ${name} is registered`);
  // deno-lint-ignore no-explicit-any
  const result: CommandResult & { data?: any } = await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
  return result;
}

async function online(t: TestServer, user: string): Promise<RawClient> {
  const { client } = await RawClient.login(t.port, user, "pw", "r");
  client.send("<presence/>");
  await roundTrip(client);
  return client;
}

let counter = 0;

async function ok(client: RawClient, payload: string): Promise<Element> {
  const id = `s${++counter}`;
  client.send(
    `<iq type='set' id='${id}' to='${SERVICE}'><pubsub xmlns='${PS}'>${payload}` +
      `</pubsub></iq>`,
  );
  const answer = await client.next((el) => el.name === "iq" && el.attrs.id === id);
  if (answer.attrs.type !== "result") assert.fail(`expected a result, got ${serialize(answer)}`);
  return answer;
}

function publishXml(node: string, id: string, body: string): string {
  return `<publish node='${node}'><item id='${id}'><entry xmlns='urn:example:news'>${body}` +
    `</entry></item></publish>`;
}

function nextEvent(client: RawClient, node: string, name: string): Promise<Element> {
  return client.next((el) =>
    el.name === "message" &&
    el.getChild("event", EVENT)?.getChild(name, EVENT)?.attrs.node === node
  );
}

/** alice owns `news` with items 1 and 2; bob is subscribed and online. */
async function newsNode(t: TestServer): Promise<{ alice: RawClient; bob: RawClient }> {
  const alice = await online(t, "alice");
  const bob = await online(t, "bob");
  await ok(alice, "<create node='news'/>");
  await ok(bob, "<subscribe node='news' jid='bob@localhost'/>");
  for (const id of ["1", "2"]) {
    await ok(alice, publishXml("news", id, `item ${id}`));
    await nextEvent(bob, "news", "items");
  }
  return { alice, bob };
}

Deno.test("the pubsub section browses a component's nodes, configuration, affiliations and items", async () => {
  const t = await start();
  const { alice, bob } = await newsNode(t);
  try {
    const services = await pubsubCommand(t, "list_services");
    assert.deepEqual(services.data, [{ service: SERVICE, kind: "pubsub", nodes: 1 }]);

    const nodes = await pubsubCommand(t, "list_nodes", SERVICE);
    assert.deepEqual(nodes.data.map((n: { node: string }) => n.node), ["news"]);
    assert.equal(nodes.data[0].access_model, "open");
    assert.deepEqual(nodes.table?.columns, ["node", "title", "access_model", "created"]);

    const config = await pubsubCommand(t, "get_node_config", SERVICE, "news");
    assert.equal(config.data["pubsub#access_model"], "open");
    assert.equal(config.data["pubsub#notify_retract"], "1");
    assert.ok(Array.isArray(config.data["pubsub#roster_groups_allowed"]));
    const one = await pubsubCommand(t, "get_node_config", SERVICE, "news", "access_model");
    assert.deepEqual(one.data, { "pubsub#access_model": "open" });
    assert.equal(one.message, "pubsub#access_model = open");

    const affiliations = await pubsubCommand(t, "node_affiliations", SERVICE, "news");
    assert.deepEqual(affiliations.data, { "alice@localhost": "owner" });

    const items = await pubsubCommand(t, "list_items", SERVICE, "news");
    assert.deepEqual(items.data.map((i: { id: string }) => i.id), ["1", "2"]);
    assert.equal(items.data[0].publisher, "alice@localhost");

    const item = await pubsubCommand(t, "get_item", SERVICE, "news", "2");
    assert.equal(item.data.payload, "<entry xmlns='urn:example:news'>item 2</entry>");
    assert.match(item.message!, /^2 by alice@localhost at .*\n<entry/);
  } finally {
    alice.close();
    bob.close();
    await t.stop();
  }
});

Deno.test("the pubsub section changes nodes as their operator, and subscribers are told", async () => {
  // Only admins may create nodes on this component: the operator still may.
  const t = await start('pubsub_create = "admins"\n');
  const alice = await online(t, "alice");
  const bob = await online(t, "bob");
  try {
    const created = await pubsubCommand(t, "create_node", SERVICE, "news");
    assert.deepEqual(created.data, { service: SERVICE, node: "news" });
    // The node is the service's own until the operator names other owners.
    assert.deepEqual((await pubsubCommand(t, "node_affiliations", SERVICE, "news")).data, {
      [SERVICE]: "owner",
    });
    const set = await pubsubCommand(
      t,
      "set_affiliation",
      SERVICE,
      "news",
      "alice@localhost",
      "owner",
    );
    assert.deepEqual(set.data, {
      service: SERVICE,
      node: "news",
      jid: "alice@localhost",
      affiliation: "owner",
    });
    // §8.9.4: alice hears of her new affiliation.
    const told = await alice.next((el) =>
      el.name === "message" && el.attrs.from === SERVICE &&
      el.getChild("pubsub", PS)?.getChild("affiliations", PS)?.attrs.node === "news"
    );
    assert.equal(
      told.getChild("pubsub", PS)!.getChild("affiliations", PS)!.getChild("affiliation", PS)!
        .attrs.affiliation,
      "owner",
    );
    await pubsubCommand(t, "set_affiliation", SERVICE, "news", SERVICE, "none");
    assert.deepEqual((await pubsubCommand(t, "node_affiliations", SERVICE, "news")).data, {
      "alice@localhost": "owner",
    });

    // Configuration changes one option at a time, checked as a submitted form would be.
    const titled = await pubsubCommand(
      t,
      "set_node_config_option",
      SERVICE,
      "news",
      "title",
      "Daily news",
    );
    assert.deepEqual(titled.data, { service: SERVICE, node: "news", "pubsub#title": "Daily news" });
    const groups = await pubsubCommand(
      t,
      "set_node_config_option",
      SERVICE,
      "news",
      "pubsub#roster_groups_allowed",
      "friends, family",
    );
    assert.deepEqual(groups.data["pubsub#roster_groups_allowed"], ["friends", "family"]);
    const config = (await pubsubCommand(t, "get_node_config", SERVICE, "news")).data;
    assert.equal(config["pubsub#title"], "Daily news");
    assert.deepEqual(config["pubsub#roster_groups_allowed"], ["friends", "family"]);

    // The new owner publishes; bob subscribes.
    await ok(bob, "<subscribe node='news' jid='bob@localhost'/>");
    for (const id of ["1", "2", "3"]) {
      await ok(alice, publishXml("news", id, `item ${id}`));
      await nextEvent(bob, "news", "items");
    }

    // delete_item retracts with a notification.
    const deleted = await pubsubCommand(t, "delete_item", SERVICE, "news", "1");
    assert.deepEqual(deleted.data, { service: SERVICE, node: "news", id: "1" });
    const retract = await nextEvent(bob, "news", "items");
    assert.equal(
      retract.getChild("event", EVENT)!.getChild("items", EVENT)!.getChild("retract", EVENT)
        ?.attrs.id,
      "1",
    );
    assert.deepEqual(
      (await pubsubCommand(t, "list_items", SERVICE, "news")).data.map((i: { id: string }) => i.id),
      ["2", "3"],
    );

    // delete_all_items purges, and bob gets the purge event (notify_retract is on by default).
    const purged = await pubsubCommand(t, "delete_all_items", SERVICE, "news");
    assert.deepEqual(purged.data, { service: SERVICE, node: "news", deleted: 2 });
    await nextEvent(bob, "news", "purge");
    assert.deepEqual((await pubsubCommand(t, "list_items", SERVICE, "news")).data, []);

    // bob becomes a publisher and may now publish.
    await pubsubCommand(t, "set_affiliation", SERVICE, "news", "bob@localhost", "publisher");
    await ok(bob, publishXml("news", "by-bob", "hello"));
    assert.equal(
      (await pubsubCommand(t, "get_item", SERVICE, "news", "by-bob")).data.publisher,
      "bob@localhost",
    );

    // delete_node tells subscribers.
    const gone = await pubsubCommand(t, "delete_node", SERVICE, "news");
    assert.deepEqual(gone.data, { service: SERVICE, node: "news" });
    await nextEvent(bob, "news", "delete");
    assert.deepEqual((await pubsubCommand(t, "list_nodes", SERVICE)).data, []);
  } finally {
    alice.close();
    bob.close();
    await t.stop();
  }
});

Deno.test("pubsub commands refuse bad input with clear errors", async () => {
  const t = await start();
  const { alice, bob } = await newsNode(t);
  try {
    const refuses = async (pattern: RegExp, name: string, ...args: string[]) =>
      await assert.rejects(() => pubsubCommand(t, name, ...args), pattern);
    await refuses(
      /Expected a pubsub service address .* found 'not a jid@@'/,
      "list_nodes",
      "not a jid@@",
    );
    await refuses(/Expected a pubsub service address/, "list_nodes", "alice@localhost/r");
    await refuses(/No pubsub service at 'localhost'/, "list_nodes", "localhost");
    await refuses(/No pubsub service at 'elsewhere.example'/, "list_nodes", "elsewhere.example");
    await refuses(
      /The pep module is not loaded on 'elsewhere.example'/,
      "list_nodes",
      "a@elsewhere.example",
    );
    await refuses(/No node 'nope' at pubsub.localhost/, "list_items", SERVICE, "nope");
    await refuses(/Expected a node name/, "delete_node", SERVICE);
    await refuses(/No item 'zzz' in node 'news'/, "get_item", SERVICE, "news", "zzz");
    await refuses(/No item 'zzz' in node 'news'/, "delete_item", SERVICE, "news", "zzz");
    await refuses(
      /Unknown node option 'colour'; expected one of pubsub#/,
      "get_node_config",
      SERVICE,
      "news",
      "colour",
    );
    await refuses(/Node 'news' already exists at pubsub.localhost/, "create_node", SERVICE, "news");
    await refuses(
      /Expected an affiliation \(owner, .*\), found 'king'/,
      "set_affiliation",
      SERVICE,
      "news",
      "bob@localhost",
      "king",
    );
    await refuses(
      /Expected a JID, found 'a@@b'/,
      "set_affiliation",
      SERVICE,
      "news",
      "a@@b",
      "member",
    );
    // The engine's own refusal reads as one: the last owner stays.
    await refuses(
      /pubsub.localhost refused: A node must keep at least one owner/,
      "set_affiliation",
      SERVICE,
      "news",
      "alice@localhost",
      "member",
    );
    await refuses(/No host or component 'nowhere'/, "list_services", "nowhere");
    await refuses(
      /Unknown node option 'colour'; expected one of pubsub#/,
      "set_node_config_option",
      SERVICE,
      "news",
      "colour",
      "red",
    );
    await refuses(
      /pubsub.localhost refused: .*pubsub#max_items/,
      "set_node_config_option",
      SERVICE,
      "news",
      "max_items",
      "lots",
    );
    await refuses(
      /Expected a value for pubsub#title/,
      "set_node_config_option",
      SERVICE,
      "news",
      "title",
    );
    // Nothing changed, and the server still answers.
    assert.deepEqual((await pubsubCommand(t, "node_affiliations", SERVICE, "news")).data, {
      "alice@localhost": "owner",
    });
    await ok(alice, publishXml("news", "3", "still up"));
  } finally {
    alice.close();
    bob.close();
    await t.stop();
  }
});

/**
 * A minimal stand-in for the PEP module (mod/pep.ts is written separately): each account of
 * the host gets a PubsubService at its bare JID, owned by the account, provided as `pep`. It
 * also registers the pubsub section, as the real one does.
 */
function pepStandIn(m: ModuleAPI): void {
  const store = new PubsubStore(m.database);
  const services = new Map<string, PubsubService>();
  const serviceOf = (user: string) => {
    const address = `${user}@${m.domain}`;
    let service = services.get(user);
    if (!service) {
      service = new PubsubService(address, store, {
        mayCreate: (actor) => actor.bareString() === address,
        isServiceAdmin: (bare) => bare === address,
        defaultConfig: () => defaultNodeConfig(65_536),
        rosterGroups: () => undefined,
        hasPresenceSubscription: () => false,
        maxItemBytes: 65_536,
        maxNodes: 100,
        maxItemsPerNode: 100,
        autoCreateOnPublish: true,
        notify: (message) => m.send(message),
      });
      services.set(user, service);
    }
    return service;
  };
  m.provide("pep", {
    serviceOf,
    users: () => [...services.keys()].filter((user) => serviceOf(user).nodes().length > 0).sort(),
  });
  m.shellCommands(PUBSUB_COMMANDS);
}

Deno.test("an account's bare JID names its PEP service; a second registration is harmless", async () => {
  const t = await start();
  try {
    t.server.modules.register("pep_stand_in", { default: pepStandIn });
    const host = t.server.hosts.get("localhost")!;
    await t.server.modules.load(host, "pep_stand_in");
    await assert.rejects(
      () => pubsubCommand(t, "list_nodes", "nobody@localhost"),
      /No account 'nobody@localhost'/,
    );
    const node = "urn:xmpp:avatar:metadata";
    assert.deepEqual((await pubsubCommand(t, "create_node", "alice@localhost", node)).data, {
      service: "alice@localhost",
      node,
    });
    assert.deepEqual(
      (await pubsubCommand(t, "list_nodes", "Alice@localhost")).data.map((n: { node: string }) =>
        n.node
      ),
      [node],
    );
    assert.deepEqual((await pubsubCommand(t, "node_affiliations", "alice@localhost", node)).data, {
      "alice@localhost": "owner",
    });
    assert.deepEqual((await pubsubCommand(t, "list_services")).data, [
      { service: "alice@localhost", kind: "pep", nodes: 1 },
      { service: SERVICE, kind: "pubsub", nodes: 0 },
    ]);
    assert.deepEqual((await pubsubCommand(t, "list_nodes", "bob@localhost")).data, []);
    await pubsubCommand(t, "delete_node", "alice@localhost", node);
    assert.deepEqual((await pubsubCommand(t, "list_nodes", "alice@localhost")).data, []);

    // Unloading the second registrant leaves the section to the component's module.
    t.server.modules.unload(host, "pep_stand_in");
    assert.equal(t.server.commands.list().filter((c) => c.section === "pubsub").length, 12);
    await assert.rejects(
      () => pubsubCommand(t, "list_nodes", "alice@localhost"),
      /The pep module is not loaded on 'localhost'/,
    );
  } finally {
    await t.stop();
  }
});

function lilt(args: string[]) {
  return runLilt(args);
}

Deno.test("lilt shell pubsub ... --json answers over the admin socket", async () => {
  const t = await start();
  const { alice, bob } = await newsNode(t);
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  const shell = (...args: string[]) => lilt(["shell", "-c", file, "pubsub", ...args, "--json"]);
  try {
    const listed = await shell("list_items", SERVICE, "news");
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout).map((i: { id: string }) => i.id), ["1", "2"]);

    const item = await shell("get_item", SERVICE, "news", "1");
    assert.equal(item.code, 0, item.stderr);
    assert.equal(JSON.parse(item.stdout).payload, "<entry xmlns='urn:example:news'>item 1</entry>");

    const deleted = await shell("delete_item", SERVICE, "news", "1");
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(JSON.parse(deleted.stdout), { service: SERVICE, node: "news", id: "1" });
    await nextEvent(bob, "news", "items");

    const missing = await shell("list_items", SERVICE, "nope");
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "");
    assert.equal(missing.stderr, "lilt: No node 'nope' at pubsub.localhost\n");
  } finally {
    alice.close();
    bob.close();
    await admin.close();
    await t.stop();
  }
});
