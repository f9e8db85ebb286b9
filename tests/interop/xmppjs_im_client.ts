// Drives real xmpp.js clients (npm:@xmpp/client) through everyday IM against Lilt: roster
// pushes, carbons, priorities, blocking and offline messages. Run by xmppjs_im_test.ts as a
// child process so DENO_CERT can make it trust the test CA. Prints one JSON line.
//
// Usage: deno run -A xmppjs_im_client.ts PORT

import { client, xml } from "@xmpp/client";

const NS_ROSTER = "jabber:iq:roster";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_BLOCKING = "urn:xmpp:blocking";
const NS_DELAY = "urn:xmpp:delay";
const NS_PING = "urn:xmpp:ping";

/** The bits of an xmpp.js element this script uses. */
interface Stanza {
  name: string;
  attrs: Record<string, string | undefined>;
  is(name: string, xmlns?: string): boolean;
  getChild(name: string, xmlns?: string): Stanza | undefined;
  getChildren(name: string, xmlns?: string): Stanza[];
  getChildText(name: string, xmlns?: string): string | null;
  toString(): string;
}

/** One roster push item as a client saw it. */
interface Push {
  jid: string;
  subscription: string;
  ask: string | null;
}

/** A logged-in xmpp.js client and everything it received. */
interface Client {
  // deno-lint-ignore no-explicit-any
  xmpp: any;
  bare: string;
  /** The bound full JID (with Bind2 the server completes the resource asked for). */
  full: string;
  pushes: Push[];
  stanzas: Stanza[];
}

async function connect(port: number, username: string, resource: string): Promise<Client> {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${port}`,
    domain: "localhost",
    username,
    password: `${username}-secret`,
    resource,
  });
  const bare = `${username}@localhost`;
  const c: Client = { xmpp, bare, full: "", pushes: [], stanzas: [] };
  xmpp.on("error", () => {});
  xmpp.on("stanza", (stanza: Stanza) => c.stanzas.push(stanza));
  xmpp.iqCallee.set(NS_ROSTER, "query", (ctx: { stanza: Stanza; element: Stanza }) => {
    const from = ctx.stanza.attrs.from;
    if (from !== undefined && from !== bare) return undefined;
    for (const item of ctx.element.getChildren("item")) {
      c.pushes.push({
        jid: item.attrs.jid ?? "",
        subscription: item.attrs.subscription ?? "none",
        ask: item.attrs.ask ?? null,
      });
    }
    return true;
  });
  // Blocklist pushes (XEP-0191 §3.3, §3.4) just get acknowledged.
  xmpp.iqCallee.set(NS_BLOCKING, "block", () => true);
  xmpp.iqCallee.set(NS_BLOCKING, "unblock", () => true);
  c.full = (await xmpp.start()).toString();
  await roster(c);
  await xmpp.send(xml("presence"));
  return c;
}

async function roster(c: Client): Promise<Push[]> {
  const result: Stanza = await c.xmpp.iqCaller.request(
    xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })),
    10_000,
  );
  return (result.getChild("query", NS_ROSTER)?.getChildren("item") ?? []).map((item) => ({
    jid: item.attrs.jid ?? "",
    subscription: item.attrs.subscription ?? "none",
    ask: item.attrs.ask ?? null,
  }));
}

/** Round trip to the server: everything it sent this client before is then received. */
async function ping(c: Client): Promise<void> {
  await c.xmpp.iqCaller.request(
    xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: NS_PING })),
    10_000,
  );
}

async function set(c: Client, child: unknown): Promise<void> {
  await c.xmpp.iqCaller.request(xml("iq", { type: "set" }, child), 10_000);
}

async function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function chat(to: string, body: string) {
  return xml("message", { to, type: "chat" }, xml("body", {}, body));
}

/** Messages carrying `body` directly (not wrapped in a carbon). */
function direct(c: Client, body: string): Stanza[] {
  return c.stanzas.filter((s) => s.is("message") && s.getChildText("body") === body);
}

/** Carbons of kind `kind` (received or sent) whose forwarded message carries `body`. */
function carbons(c: Client, kind: string, body: string): Stanza[] {
  return c.stanzas.filter((s) => {
    const forwarded = s.is("message") &&
      s.attrs.from === c.bare &&
      s.getChild(kind, NS_CARBONS)?.getChild("forwarded", "urn:xmpp:forward:0");
    return !!forwarded && forwarded.getChild("message")?.getChildText("body") === body;
  });
}

function lastPush(c: Client, jid: string): Push | undefined {
  return c.pushes.filter((p) => p.jid === jid).at(-1);
}

async function scenario(port: number): Promise<unknown> {
  const one = await connect(port, "alice", "one");
  const two = await connect(port, "alice", "two");
  const bob = await connect(port, "bob", "phone");

  // 1. Subscription handshake, answered by the clients as a user would.
  bob.xmpp.on("stanza", (s: Stanza) => {
    if (s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from === "alice@localhost") {
      bob.xmpp.send(xml("presence", { to: "alice@localhost", type: "subscribed" }));
      bob.xmpp.send(xml("presence", { to: "alice@localhost", type: "subscribe" }));
    }
  });
  one.xmpp.on("stanza", (s: Stanza) => {
    if (s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from === "bob@localhost") {
      one.xmpp.send(xml("presence", { to: "bob@localhost", type: "subscribed" }));
    }
  });
  await one.xmpp.send(xml("presence", { to: "bob@localhost", type: "subscribe" }));
  await waitFor(
    () =>
      lastPush(one, "bob@localhost")?.subscription === "both" &&
      lastPush(two, "bob@localhost")?.subscription === "both" &&
      lastPush(bob, "alice@localhost")?.subscription === "both",
    "subscription both in the roster pushes",
  );
  const rosters = { alice: await roster(one), bob: await roster(bob) };
  const pushes = { one: one.pushes, two: two.pushes, bob: bob.pushes };

  // 2. Carbons: a message to /one is copied to /two.
  await set(one, xml("enable", { xmlns: NS_CARBONS }));
  await set(two, xml("enable", { xmlns: NS_CARBONS }));
  await bob.xmpp.send(chat(one.full, "carbon check"));
  await waitFor(() => direct(one, "carbon check").length > 0, "the message on /one");
  await ping(bob);
  await ping(two);
  const carbon = carbons(two, "received", "carbon check").length > 0;

  // 3. Priorities: a chat to the bare JID goes to the highest priority resource only.
  await one.xmpp.send(xml("presence", {}, xml("priority", {}, "5")));
  await two.xmpp.send(xml("presence", {}, xml("priority", {}, "1")));
  await ping(one);
  await ping(two);
  await bob.xmpp.send(chat("alice@localhost", "priority check"));
  await waitFor(
    () => direct(one, "priority check").length + direct(two, "priority check").length > 0,
    "the bare JID chat",
  );
  await ping(bob);
  await ping(one);
  await ping(two);
  const priorityGotIt = [
    ...(direct(one, "priority check").length > 0 ? ["one"] : []),
    ...(direct(two, "priority check").length > 0 ? ["two"] : []),
  ];
  const priorityCarbonOnTwo = carbons(two, "received", "priority check").length > 0;

  // 4. Blocking: nothing from bob reaches any alice resource.
  await set(one, xml("block", { xmlns: NS_BLOCKING }, xml("item", { jid: "bob@localhost" })));
  await bob.xmpp.send(chat("alice@localhost", "you should not see this"));
  await ping(bob);
  await ping(one);
  await ping(two);
  const blockedArrived = [one, two].some((c) =>
    c.stanzas.some((s) => s.is("message") && s.toString().includes("you should not see this"))
  );

  // 5. Offline: both alice resources leave, bob writes, alice comes back.
  await set(one, xml("unblock", { xmlns: NS_BLOCKING }, xml("item", { jid: "bob@localhost" })));
  await ping(bob);
  const seen = bob.stanzas.length;
  await one.xmpp.stop();
  await two.xmpp.stop();
  // Bob hears the unavailable presence of both resources once their sessions are gone.
  const gone = (c: Client) =>
    bob.stanzas.slice(seen).some((s) =>
      s.is("presence") && s.attrs.type === "unavailable" && s.attrs.from === c.full
    );
  await waitFor(() => gone(one) && gone(two), "alice's unavailable presences");
  await bob.xmpp.send(chat("alice@localhost", "while you were away"));
  await ping(bob);
  const three = await connect(port, "alice", "three");
  await waitFor(() => direct(three, "while you were away").length > 0, "the offline message");
  const offline = direct(three, "while you were away")[0];
  const delay = offline.getChild("delay", NS_DELAY);
  await three.xmpp.stop();
  await bob.xmpp.stop();

  return {
    rosters,
    pushes,
    carbon,
    priority: { gotIt: priorityGotIt, carbonOnTwo: priorityCarbonOnTwo },
    blockedArrived,
    offline: {
      body: offline.getChildText("body"),
      from: offline.attrs.from,
      delayFrom: delay?.attrs.from ?? null,
      stamp: delay?.attrs.stamp ?? null,
    },
  };
}

const port = Number(Deno.args[0]);
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "Scenario did not finish within 60 s" }));
  Deno.exit(0);
}, 60_000);
try {
  console.log(JSON.stringify(await scenario(port)));
} catch (error) {
  console.log(JSON.stringify({ error: String((error as Error)?.stack ?? error) }));
}
clearTimeout(timer);
Deno.exit(0);
