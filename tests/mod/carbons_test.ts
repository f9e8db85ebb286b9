// XEP-0280 message carbons over the wire: received and sent copies reach the account's other
// carbons-enabled resources, and private, no-copy, ineligible and disabled cases get none.

import assert from "node:assert/strict";
import type { Element } from "../../core/xml/element.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../helpers/test_server.ts";

const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";
const MODULES = ["disco", "roster", "presence", "carbons"];

async function setCarbons(client: RawClient, on: boolean): Promise<void> {
  const id = `carbons-${crypto.randomUUID()}`;
  client.send(
    `<iq type='set' id='${id}'><${on ? "enable" : "disable"} xmlns='${NS_CARBONS}'/></iq>`,
  );
  const answer = await client.next((el) => el.attrs.id === id);
  assert.equal(answer.attrs.type, "result");
}

/** The message inside a carbon, after checking the wrapper's shape. */
function unwrap(carbon: Element, kind: "sent" | "received", to: string): Element {
  assert.equal(carbon.name, "message");
  assert.equal(carbon.attrs.from, "alice@localhost");
  assert.equal(carbon.attrs.to, to);
  const wrapper = carbon.getChild(kind, NS_CARBONS);
  assert.ok(wrapper, `a <${kind}/> carbon`);
  const inner = wrapper.getChild("forwarded", NS_FORWARD)?.getChild("message");
  assert.ok(inner, "a forwarded message");
  return inner;
}

function carbonsOf(client: RawClient): Element[] {
  return client.received.filter((el) =>
    el.name === "message" &&
    (el.getChild("sent", NS_CARBONS) !== undefined ||
      el.getChild("received", NS_CARBONS) !== undefined)
  );
}

interface Party {
  t: TestServer;
  one: RawClient;
  two: RawClient;
  bob: RawClient;
  close(): Promise<void>;
}

/** alice/one and alice/two with carbons enabled and available, bob/b available. */
async function party(): Promise<Party> {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw", bob: "pw" } });
  const { client: one } = await RawClient.login(t.port, "alice", "pw", "one");
  const { client: two } = await RawClient.login(t.port, "alice", "pw", "two");
  const { client: bob } = await RawClient.login(t.port, "bob", "pw", "b");
  for (const c of [one, two]) await setCarbons(c, true);
  one.send("<presence><priority>1</priority></presence>");
  await one.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/one");
  two.send("<presence/>");
  await two.next((el) => el.name === "presence" && el.attrs.from === "alice@localhost/two");
  bob.send("<presence/>");
  await bob.next((el) => el.name === "presence");
  return {
    t,
    one,
    two,
    bob,
    async close() {
      for (const c of [one, two, bob]) c.close();
      await t.stop();
    },
  };
}

Deno.test("a message to one resource is copied as <received/> to the other", async () => {
  const { one, two, bob, close } = await party();
  try {
    bob.send(
      "<message to='alice@localhost/one' type='chat' id='r1'><body>hello</body></message>",
    );
    const original = await one.next((el) => el.attrs.id === "r1");
    assert.equal(original.getChildText("body"), "hello");
    const carbon = await two.next((el) => el.name === "message");
    assert.equal(carbon.attrs.type, "chat");
    const inner = unwrap(carbon, "received", "alice@localhost/two");
    assert.equal(inner.attrs.id, "r1");
    assert.equal(inner.attrs.from, "bob@localhost/b");
    assert.equal(inner.attrs.to, "alice@localhost/one");
    assert.equal(inner.getChildText("body"), "hello");
    await roundTrip(one);
    assert.deepEqual(carbonsOf(one), [], "the addressed resource gets no copy");

    // To the bare JID: the highest priority resource gets the message, the other a copy.
    bob.send("<message to='alice@localhost' type='chat' id='r2'><body>again</body></message>");
    await one.next((el) => el.attrs.id === "r2");
    const second = await two.next((el) => el.name === "message");
    assert.equal(unwrap(second, "received", "alice@localhost/two").attrs.id, "r2");
  } finally {
    await close();
  }
});

Deno.test("a message one resource sends is copied as <sent/> to the other", async () => {
  const { one, two, bob, close } = await party();
  try {
    one.send("<message to='bob@localhost' type='chat' id='s1'><body>hi bob</body></message>");
    const delivered = await bob.next((el) => el.attrs.id === "s1");
    assert.equal(delivered.attrs.from, "alice@localhost/one");
    const carbon = await two.next((el) => el.name === "message");
    const inner = unwrap(carbon, "sent", "alice@localhost/two");
    assert.equal(inner.attrs.id, "s1");
    assert.equal(inner.attrs.from, "alice@localhost/one");
    assert.equal(inner.attrs.to, "bob@localhost");
    assert.equal(inner.getChildText("body"), "hi bob");
    await roundTrip(one);
    assert.deepEqual(carbonsOf(one), [], "the sender gets no copy of its own message");
    assert.deepEqual(carbonsOf(bob), []);
  } finally {
    await close();
  }
});

Deno.test("private and no-copy messages are not copied; <private/> is stripped", async () => {
  const { one, two, bob, close } = await party();
  try {
    one.send(
      "<message to='bob@localhost' type='chat' id='p1'><body>secret</body>" +
        `<private xmlns='${NS_CARBONS}'/></message>`,
    );
    const delivered = await bob.next((el) => el.attrs.id === "p1");
    assert.equal(delivered.getChild("private", NS_CARBONS), undefined, "stripped for bob");
    bob.send(
      "<message to='alice@localhost/one' type='chat' id='p2'><body>secret too</body>" +
        `<private xmlns='${NS_CARBONS}'/></message>`,
    );
    const received = await one.next((el) => el.attrs.id === "p2");
    assert.equal(received.getChild("private", NS_CARBONS), undefined, "stripped for alice");
    bob.send(
      "<message to='alice@localhost/one' type='chat' id='p3'><body>no copy</body>" +
        "<no-copy xmlns='urn:xmpp:hints'/></message>",
    );
    await one.next((el) => el.attrs.id === "p3");
    one.send(
      "<message to='bob@localhost' type='chat' id='p4'><body>no copy</body>" +
        "<no-copy xmlns='urn:xmpp:hints'/></message>",
    );
    await bob.next((el) => el.attrs.id === "p4");
    await roundTrip(two);
    assert.deepEqual(carbonsOf(two), []);
  } finally {
    await close();
  }
});

Deno.test("only instant messages are copied: not bodiless normal messages or headlines", async () => {
  const { one, two, bob, close } = await party();
  try {
    bob.send("<message to='alice@localhost/one' id='x1'><x xmlns='urn:example:data'/></message>");
    await one.next((el) => el.attrs.id === "x1");
    bob.send(
      "<message to='alice@localhost/one' type='headline' id='x2'><body>news</body></message>",
    );
    await one.next((el) => el.attrs.id === "x2");
    await roundTrip(two);
    assert.deepEqual(carbonsOf(two), []);

    // A normal message with a body, or a delivery receipt, is part of a conversation.
    bob.send("<message to='alice@localhost/one' id='x3'><body>note</body></message>");
    const normal = await two.next((el) => el.name === "message");
    assert.equal(unwrap(normal, "received", "alice@localhost/two").attrs.id, "x3");
    bob.send(
      "<message to='alice@localhost/one' id='x4'><received xmlns='urn:xmpp:receipts' id='s1'/>" +
        "</message>",
    );
    const receipt = await two.next((el) => el.name === "message");
    assert.equal(unwrap(receipt, "received", "alice@localhost/two").attrs.id, "x4");
  } finally {
    await close();
  }
});

Deno.test("an error answering a copied message is copied too, other errors are not", async () => {
  const { one, two, bob, close } = await party();
  try {
    one.send("<message to='bob@localhost/b' type='chat' id='e1'><body>?</body></message>");
    await bob.next((el) => el.attrs.id === "e1");
    await two.next((el) => el.name === "message"); // the <sent/> copy
    const error = "<error type='cancel'>" +
      "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
    bob.send(`<message to='alice@localhost/one' type='error' id='unrelated'>${error}</message>`);
    bob.send(`<message to='alice@localhost/one' type='error' id='e1'>${error}</message>`);
    await one.next((el) => el.attrs.id === "unrelated");
    await one.next((el) => el.attrs.id === "e1");
    const carbon = await two.next((el) => el.name === "message");
    assert.equal(carbon.attrs.type, "error");
    assert.equal(unwrap(carbon, "received", "alice@localhost/two").attrs.id, "e1");
    await roundTrip(two);
    assert.equal(carbonsOf(two).length, 2, "no copy of the unrelated error");
  } finally {
    await close();
  }
});

Deno.test("a resource that disabled carbons, or never enabled them, gets no copies", async () => {
  const { t, one, two, bob, close } = await party();
  const { client: three } = await RawClient.login(t.port, "alice", "pw", "three");
  try {
    await setCarbons(two, false);
    await setCarbons(two, false); // disabling twice is not an error
    bob.send("<message to='alice@localhost/one' type='chat' id='d1'><body>1</body></message>");
    await one.next((el) => el.attrs.id === "d1");
    one.send("<message to='bob@localhost' type='chat' id='d2'><body>2</body></message>");
    await bob.next((el) => el.attrs.id === "d2");
    for (const c of [two, three]) {
      await roundTrip(c);
      assert.deepEqual(carbonsOf(c), []);
    }
    // Enabled again, it gets copies again.
    await setCarbons(two, true);
    await setCarbons(two, true);
    bob.send("<message to='alice@localhost/one' type='chat' id='d3'><body>3</body></message>");
    const carbon = await two.next((el) => el.name === "message");
    assert.equal(unwrap(carbon, "received", "alice@localhost/two").attrs.id, "d3");
  } finally {
    three.close();
    await close();
  }
});

Deno.test("copies follow the account's enabled resources as they enable, disable and leave", async () => {
  const { t, one, two, bob, close } = await party();
  const { client: three } = await RawClient.login(t.port, "alice", "pw", "three");
  const { client: bob2 } = await RawClient.login(t.port, "bob", "pw", "b2");
  try {
    // bob's account has no carbons-enabled resource: his other resource gets no copies.
    one.send("<message to='bob@localhost/b' type='chat' id='n1'><body>x</body></message>");
    await bob.next((el) => el.attrs.id === "n1");
    bob.send("<message to='alice@localhost/one' type='chat' id='n2'><body>x</body></message>");
    await one.next((el) => el.attrs.id === "n2");
    await roundTrip(bob2);
    assert.deepEqual(carbonsOf(bob2), []);

    // one and two enabled; two leaves, one disables: nobody is left to copy to.
    two.close();
    await setCarbons(one, false);
    await setCarbons(three, true);
    await setCarbons(three, false);
    bob.send("<message to='alice@localhost/one' type='chat' id='n3'><body>x</body></message>");
    await one.next((el) => el.attrs.id === "n3");
    await roundTrip(three);
    assert.deepEqual(carbonsOf(three), []);

    // The last one to enable gets copies, whatever the others did before.
    await setCarbons(three, true);
    bob.send("<message to='alice@localhost/one' type='chat' id='n4'><body>x</body></message>");
    const carbon = await three.next((el) => el.name === "message");
    assert.equal(unwrap(carbon, "received", "alice@localhost/three").attrs.id, "n4");
  } finally {
    three.close();
    bob2.close();
    await close();
  }
});

Deno.test("the server advertises urn:xmpp:carbons:2", async () => {
  const t = await startTestServer({ modules: MODULES, users: { alice: "pw" } });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    client.send(
      "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    const answer = await client.next((el) => el.attrs.id === "d1");
    const features = answer.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
    assert.ok(features.includes(NS_CARBONS), features.join(", "));
    client.close();
  } finally {
    await t.stop();
  }
});
