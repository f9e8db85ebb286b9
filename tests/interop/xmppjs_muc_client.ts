// The xmpp.js side of the mixed-client room test: bob, with xmpp.js's default settings over
// STARTTLS, joins the room slixmpp made (XEP-0045 presence with a history request), collects
// the join sequence (occupants, own presence, history, subject), says one thing, waits for
// slixmpp's answer and leaves. Run as a child process by clients_test.ts (DENO_CERT trusts the
// test CA). Prints one JSON line.
//
// Usage: deno run -A xmppjs_muc_client.ts PORT ROOM_JID

import { client, xml } from "@xmpp/client";

const NS_MUC = "http://jabber.org/protocol/muc";
const NS_MUC_USER = `${NS_MUC}#user`;

interface Stanza {
  name: string;
  attrs: Record<string, string>;
  getChild(name: string, xmlns?: string): Stanza | undefined;
  getChildren(name: string): Stanza[];
  getChildText(name: string): string | null;
}

const [portText, room] = Deno.args;
const xmpp = client({
  service: `xmpp://127.0.0.1:${portText}`,
  domain: "localhost",
  username: "bob",
  password: "bob-secret",
  resource: "js",
});
xmpp.on("error", () => {});

const me = `${room}/Bob`;
const occupants: string[] = [];
const selfCodes: number[] = [];
const history: { from: string; body: string; delayed: boolean }[] = [];
const messages: { from: string; body: string }[] = [];
let subject: string | undefined;
let left = false;
const waiters: (() => void)[] = [];
xmpp.on("stanza", (stanza: Stanza) => {
  const from = stanza.attrs.from ?? "";
  if (!from.startsWith(`${room}/`)) return;
  if (stanza.name === "presence") {
    const x = stanza.getChild("x", NS_MUC_USER);
    if (from === me) {
      if (stanza.attrs.type === "unavailable") left = true;
      else selfCodes.push(...(x?.getChildren("status") ?? []).map((s) => Number(s.attrs.code)));
    } else if (stanza.attrs.type !== "unavailable") occupants.push(from);
  } else if (stanza.name === "message" && stanza.attrs.type === "groupchat") {
    const body = stanza.getChildText("body");
    const subjectText = stanza.getChildText("subject");
    if (subject === undefined && subjectText !== null && body === null) subject = subjectText;
    else if (body !== null && subject === undefined) {
      history.push({
        from,
        body,
        delayed: stanza.getChild("delay", "urn:xmpp:delay") !== undefined,
      });
    } else if (body !== null) messages.push({ from, body });
  }
  for (const wake of waiters.splice(0)) wake();
});

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within 20 s`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 200);
      waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

let result: unknown;
try {
  const jid = await xmpp.start();
  await xmpp.send(xml("presence"));
  await xmpp.send(
    xml("presence", { to: me }, xml("x", { xmlns: NS_MUC }, xml("history", { maxstanzas: "5" }))),
  );
  await until(() => subject !== undefined, "subject");
  await xmpp.send(
    xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hello from xmpp.js")),
  );
  await until(() => messages.some((m) => m.from !== me), "answer");
  await xmpp.send(xml("presence", { to: me, type: "unavailable" }));
  await until(() => left, "own unavailable presence");
  await xmpp.stop();
  result = { jid: jid.toString(), occupants, selfCodes, history, subject, messages, left };
} catch (error) {
  await xmpp.stop().catch(() => {});
  result = { error: String(error), occupants, selfCodes, history, subject, messages };
}
console.log(JSON.stringify(result));
Deno.exit(0);
