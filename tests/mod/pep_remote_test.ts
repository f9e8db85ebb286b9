// PEP across federation: two Lilt servers on loopback (certificates from a test CA, as in
// tests/core/s2s/), where a remote contact's caps reach the owner's server in his presence, are
// learned by its caps module, and decide which of his resources get notifications and last items.

import assert from "node:assert/strict";
import { hostService } from "../../core/modules.ts";
import { parseJid } from "../../core/jid.ts";
import type { Element } from "../../core/xml/element.ts";
import { capsHash } from "../../mod/disco.ts";
import { type DnsResponder, startDnsResponder } from "../helpers/dns_responder.ts";
import { exchange, online, startFederatingServer } from "../helpers/federation.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { createTestCa } from "../helpers/test_ca.ts";
import type { TestServer } from "../helpers/test_server.ts";

const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_INFO = "http://jabber.org/protocol/disco#info";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_TUNE = "http://jabber.org/protocol/tune";
const NS_NICK = "http://jabber.org/protocol/nick";
const CAPS_NODE = "https://lilt.example/remote-test-client";
const IDENTITIES = [{ category: "client", type: "pc", name: "Test" }];
const MODULES = ["disco", "ping", "roster", "presence", "caps", "pep"];

const featuresFor = (notify: string[]) => [NS_INFO, ...notify.map((node) => `${node}+notify`)];
const verFor = (notify: string[]) => capsHash(IDENTITIES, featuresFor(notify));

/** Available presence whose caps ask for these nodes' notifications. */
function capsPresence(notify: string[]): string {
  return `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${CAPS_NODE}' ` +
    `ver='${verFor(notify)}'/></presence>`;
}

/** Answers the disco#info query about its caps that `asker` sends the client. */
async function answerCapsQuery(client: RawClient, asker: string, notify: string[]) {
  const node = `${CAPS_NODE}#${verFor(notify)}`;
  const query = await client.next(
    (el) =>
      el.name === "iq" && el.attrs.type === "get" && el.attrs.from === asker &&
      el.getChild("query", NS_INFO)?.attrs.node === node,
    10_000,
  );
  const features = featuresFor(notify).map((f) => `<feature var='${f}'/>`).join("");
  client.send(
    `<iq type='result' id='${query.attrs.id}' to='${asker}'><query xmlns='${NS_INFO}' ` +
      `node='${node}'><identity category='client' type='pc' name='Test'/>${features}</query></iq>`,
  );
}

let counter = 0;

/** A ping to `to` and its answer: what the client sent before has been handled on that route. */
async function ping(client: RawClient, to: string): Promise<void> {
  const id = `ping-${++counter}`;
  client.send(`<iq type='get' id='${id}' to='${to}'><ping xmlns='urn:xmpp:ping'/></iq>`);
  const answer = await client.next((el) => el.attrs.id === id, 10_000);
  assert.equal(answer.attrs.type, "result");
}

/** Publishes a tune item on the client's own PEP node. */
async function publishTune(client: RawClient, title: string): Promise<void> {
  const id = `pub-${++counter}`;
  client.send(
    `<iq type='set' id='${id}'><pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_TUNE}'>` +
      `<item><tune xmlns='${NS_TUNE}'><title>${title}</title></tune></item></publish></pubsub></iq>`,
  );
  const answer = await client.next((el) => el.attrs.id === id);
  assert.equal(answer.attrs.type, "result", answer.toString());
}

const tuneTitle = (el: Element) =>
  el.getChild("event", NS_EVENT)?.getChild("items")?.getChild("item")?.getChild("tune", NS_TUNE)
    ?.getChildText("title");
const isTuneEvent = (el: Element) =>
  el.name === "message" && el.attrs.from === "alice@a.test" && tuneTitle(el) !== undefined;

/** Tune events already looked at. */
const seen = new WeakSet<Element>();

/**
 * Alice sends `to` a chat message over the same link as her notifications, and the client waits
 * for it: any notification sent before it has arrived too. Returns the tune titles received.
 */
async function tunesBeforeSync(alice: RawClient, to: RawClient, full: string): Promise<string[]> {
  const id = `sync-${++counter}`;
  alice.send(`<message to='${full}' type='chat' id='${id}'><body>sync</body></message>`);
  await to.next((el) => el.name === "message" && el.attrs.id === id, 10_000);
  const titles: string[] = [];
  for (;;) {
    const index = to.received.findIndex((el) => isTuneEvent(el) && !seen.has(el));
    if (index < 0) return titles;
    seen.add(to.received[index]);
    titles.push(tuneTitle(to.received[index])!);
  }
}

Deno.test("a remote contact's resources get PEP notifications and last items as their caps ask, until unavailable", async () => {
  const dns: DnsResponder = await startDnsResponder();
  const ca = await createTestCa();
  const started: TestServer[] = [];
  const clients: RawClient[] = [];
  try {
    const common = { dns, ca, modules: MODULES };
    const a = await startFederatingServer({ ...common, domain: "a.test", users: { alice: "pw" } });
    started.push(a);
    const b = await startFederatingServer({ ...common, domain: "b.test", users: { bob: "pw" } });
    started.push(b);
    const alice = await online(a.port, "alice", "a.test");
    clients.push(alice);
    const bob = await online(b.port, "bob", "b.test");
    clients.push(bob);
    await exchange({ client: alice, bare: "alice@a.test" }, { client: bob, bare: "bob@b.test" });
    const caps = hostService(a.server.hosts.get("a.test")!, "caps")!;

    // bob's presence so far has no caps: alice's first item does not reach him.
    await publishTune(alice, "one");
    assert.deepEqual(await tunesBeforeSync(alice, bob, "bob@b.test/r"), []);

    // His caps ask for tunes: a.test asks his disco#info (the hash is new), then sends him the
    // last item, with its delay.
    bob.send(capsPresence([NS_TUNE]));
    await answerCapsQuery(bob, "a.test", [NS_TUNE]);
    const last = await bob.next((el) => isTuneEvent(el) && !seen.has(el), 10_000);
    seen.add(last);
    assert.equal(tuneTitle(last), "one");
    assert.ok(last.getChild("delay", "urn:xmpp:delay"), last.toString());
    assert.ok(caps.featuresOf(parseJid("bob@b.test/r"))?.has(`${NS_TUNE}+notify`));

    // A second resource whose caps ask only for nicknames: learned, but never sent tunes.
    const { client: phone } = await RawClient.login(b.port, "bob", "pw", "phone", "b.test");
    clients.push(phone);
    phone.send(capsPresence([NS_NICK]));
    await answerCapsQuery(phone, "a.test", [NS_NICK]);
    await ping(phone, "a.test");
    const phoneFeatures = caps.featuresOf(parseJid("bob@b.test/phone"));
    assert.ok(phoneFeatures?.has(`${NS_NICK}+notify`));
    assert.ok(!phoneFeatures?.has(`${NS_TUNE}+notify`));

    await publishTune(alice, "two");
    assert.deepEqual(await tunesBeforeSync(alice, bob, "bob@b.test/r"), ["two"]);
    assert.deepEqual(await tunesBeforeSync(alice, phone, "bob@b.test/phone"), []);

    // Unavailable: a.test forgets the resource's caps and stops notifying it, though its
    // session on b.test is still there to receive messages.
    bob.send("<presence type='unavailable'/>");
    await ping(bob, "a.test");
    assert.equal(caps.featuresOf(parseJid("bob@b.test/r")), undefined);
    await publishTune(alice, "three");
    assert.deepEqual(await tunesBeforeSync(alice, bob, "bob@b.test/r"), []);

    // Available again with the same caps: the hash is cached, so no query is needed, and the
    // last item follows at once.
    bob.send(capsPresence([NS_TUNE]));
    const again = await bob.next((el) => isTuneEvent(el) && !seen.has(el), 10_000);
    seen.add(again);
    assert.equal(tuneTitle(again), "three");
    assert.equal(
      bob.received.filter((el) =>
        el.name === "iq" && el.attrs.from === "a.test" && el.getChild("query", NS_INFO)
      ).length,
      1,
      "a.test asked bob/r's caps once",
    );
  } finally {
    for (const client of clients) client.close();
    for (const server of started) await server.stop();
    await dns.close();
  }
});

Deno.test("a remote resource whose caps are known gets the last items when the owner approves its subscription", async () => {
  const dns: DnsResponder = await startDnsResponder();
  const ca = await createTestCa();
  const started: TestServer[] = [];
  const clients: RawClient[] = [];
  try {
    const common = { dns, ca, modules: MODULES };
    const a = await startFederatingServer({ ...common, domain: "a.test", users: { alice: "pw" } });
    started.push(a);
    const b = await startFederatingServer({ ...common, domain: "b.test", users: { bob: "pw" } });
    started.push(b);
    const alice = await online(a.port, "alice", "a.test");
    clients.push(alice);
    const { client: bob } = await RawClient.login(b.port, "bob", "pw", "r", "b.test");
    clients.push(bob);
    bob.send(capsPresence([NS_TUNE]));
    await answerCapsQuery(bob, "b.test", [NS_TUNE]); // his own server learns them too
    await publishTune(alice, "one");

    // Presence directed to an account a.test does not have: its caps are not asked.
    bob.send(`<presence to='nobody@a.test'>${capsPresence([NS_NICK]).slice(10)}`);
    await ping(bob, "a.test");
    assert.ok(
      !bob.received.some((el) =>
        el.name === "iq" && el.attrs.from === "a.test" && el.attrs.type === "get"
      ),
      "no caps query for a presence to a missing account",
    );

    // alice subscribes to bob: his presence, with his caps, reaches her server, which learns
    // them; he does not share her presence yet, so he gets nothing.
    alice.send("<presence to='bob@b.test' type='subscribe'/>");
    await bob.next((el) => el.name === "presence" && el.attrs.type === "subscribe", 10_000);
    bob.send("<presence to='alice@a.test' type='subscribed'/>");
    await answerCapsQuery(bob, "a.test", [NS_TUNE]);
    await alice.next((el) => el.name === "presence" && el.attrs.from === "bob@b.test/r", 10_000);
    await ping(bob, "a.test");
    assert.deepEqual(await tunesBeforeSync(alice, bob, "bob@b.test/r"), []);

    // bob asks for hers, and her approval makes him a recipient: the last item follows.
    bob.send("<presence to='alice@a.test' type='subscribe'/>");
    await alice.next((el) => el.name === "presence" && el.attrs.type === "subscribe", 10_000);
    alice.send("<presence to='bob@b.test' type='subscribed'/>");
    const last = await bob.next((el) => isTuneEvent(el) && !seen.has(el), 10_000);
    seen.add(last);
    assert.equal(tuneTitle(last), "one");
  } finally {
    for (const client of clients) client.close();
    for (const server of started) await server.stop();
    await dns.close();
  }
});
