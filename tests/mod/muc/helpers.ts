// Shared set-up of the XEP-0045 tests: a server with `conference.localhost`, logged-in users,
// and helpers that join rooms and read what a client sees on the wire.

import assert from "node:assert/strict";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { conditionOf, RawClient, roundTrip } from "../../helpers/raw_client.ts";
import { startTestServer, type TestServer } from "../../helpers/test_server.ts";

/** The MUC service's address. */
export const MUC = "conference.localhost";
/** Namespaces of XEP-0045. */
export const NS_MUC = "http://jabber.org/protocol/muc";
export const NS_USER = "http://jabber.org/protocol/muc#user";
export const NS_OWNER = "http://jabber.org/protocol/muc#owner";
export const NS_ADMIN = "http://jabber.org/protocol/muc#admin";

/** The `[[component]]` section that loads the service, with extra option lines. */
export function componentToml(extra = ""): string {
  return `[[component]]\ndomain = "${MUC}"\nmodules = ["disco", "muc"]\n${extra}`;
}

/** A running server with logged-in, available users. */
export interface World {
  t: TestServer;
  clients: Record<string, RawClient>;
  end(): Promise<void>;
}

/** Starts a server with the MUC component and logs in `users` (resource "r"). */
export async function world(
  users: string[],
  options: { extra?: string; dataDir?: string } = {},
): Promise<World> {
  const t = await startTestServer({
    users: Object.fromEntries(users.map((u) => [u, "pw"])),
    extraToml: componentToml(options.extra),
    dataDir: options.dataDir,
  });
  const clients: Record<string, RawClient> = {};
  for (const user of users) {
    clients[user] = (await RawClient.login(t.port, user, "pw", "r")).client;
    clients[user].send("<presence/>");
    await roundTrip(clients[user]);
  }
  return {
    t,
    clients,
    async end() {
      for (const client of Object.values(clients)) client.close();
      await t.stop();
    },
  };
}

/** Logs in one more resource of a user. */
export async function login(t: TestServer, user: string, resource: string): Promise<RawClient> {
  const client = (await RawClient.login(t.port, user, "pw", resource)).client;
  client.send("<presence/>");
  await roundTrip(client);
  return client;
}

/** The muc#user `<x/>` of a presence. */
export function userX(stanza: Element): Element {
  const x = stanza.getChild("x", NS_USER);
  if (!x) assert.fail(`no muc#user <x/> in ${serialize(stanza)}`);
  return x;
}

/** The status codes of a presence or message, in order. */
export function statuses(stanza: Element): number[] {
  return (stanza.getChild("x", NS_USER)?.getChildren("status") ?? []).map((s) =>
    Number(s.attrs.code)
  );
}

/** The `<item/>` of an occupant presence. */
export function itemOf(stanza: Element): Record<string, string> {
  const item = userX(stanza).getChild("item");
  if (!item) assert.fail(`no <item/> in ${serialize(stanza)}`);
  return item.attrs;
}

/** The next presence from `from`. */
export function presenceFrom(client: RawClient, from: string): Promise<Element> {
  return client.next((el) => el.name === "presence" && el.attrs.from === from);
}

/** The next message from `from`. */
export function messageFrom(client: RawClient, from: string): Promise<Element> {
  return client.next((el) => el.name === "message" && el.attrs.from === from);
}

/**
 * Sends a join presence (with `<x xmlns=muc>` holding `inner`) and returns every stanza the
 * room sent up to and including the subject message, which ends a successful join.
 */
export async function join(
  client: RawClient,
  room: string,
  nick: string,
  inner = "",
): Promise<Element[]> {
  const roomJid = `${room}@${MUC}`;
  client.send(`<presence to='${roomJid}/${nick}'><x xmlns='${NS_MUC}'>${inner}</x></presence>`);
  const seen: Element[] = [];
  while (true) {
    const el = await client.next((s) =>
      (s.name === "presence" || s.name === "message") &&
      (s.attrs.from ?? "").startsWith(`${roomJid}`)
    );
    seen.push(el);
    if (el.name === "presence" && el.attrs.type === "error") {
      assert.fail(`join refused: ${serialize(el)}`);
    }
    if (el.name === "message" && el.getChild("subject") && !el.getChild("body")) return seen;
  }
}

/** Sends a join presence that must be refused and returns the error condition. */
export async function joinError(
  client: RawClient,
  room: string,
  nick: string,
  inner = "",
): Promise<string | undefined> {
  const to = `${room}@${MUC}/${nick}`;
  client.send(`<presence to='${to}'><x xmlns='${NS_MUC}'>${inner}</x></presence>`);
  const error = await client.next((el) =>
    el.name === "presence" && el.attrs.from === to && el.attrs.type === "error"
  );
  assert.ok(error.getChild("x", NS_MUC), "the error presence echoes the join's <x/>");
  return conditionOf(error);
}

/**
 * Creates a room owned by `client` the way a client without MUC support does (a presence with
 * no `<x/>`), which gives an instant room, unlocked at once.
 */
export async function createOpenRoom(
  client: RawClient,
  room: string,
  nick: string,
): Promise<Element> {
  client.send(`<presence to='${room}@${MUC}/${nick}'/>`);
  const self = await client.next((el) =>
    el.name === "presence" && el.attrs.from === `${room}@${MUC}/${nick}`
  );
  assert.deepEqual(statuses(self), [110, 170, 201], serialize(self));
  await client.next((el) => el.name === "message" && el.getChild("subject") !== undefined);
  return self;
}

/**
 * Creates a room owned by `client` and unlocks it at once: the join, then the instant-room
 * submission of XEP-0045 §10.1.2 (an empty form).
 */
export async function createInstantRoom(
  client: RawClient,
  room: string,
  nick: string,
): Promise<Element[]> {
  const seen = await join(client, room, nick);
  const answer = await iq(
    client,
    "set",
    `${room}@${MUC}`,
    `<query xmlns='${NS_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`,
  );
  assert.equal(answer.attrs.type, "result", serialize(answer));
  return seen;
}

let counter = 0;

/** Sends an iq and returns its answer (result or error). */
export async function iq(
  client: RawClient,
  type: "get" | "set",
  to: string,
  payload: string,
): Promise<Element> {
  const id = `muc${++counter}`;
  client.send(`<iq type='${type}' id='${id}' to='${to}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

/** Sends a message and returns the error the service answers with. */
export async function messageError(
  client: RawClient,
  to: string,
  type: string,
  inner: string,
): Promise<string | undefined> {
  const id = `err${++counter}`;
  client.send(`<message to='${to}' type='${type}' id='${id}'>${inner}</message>`);
  const error = await client.next((el) =>
    el.name === "message" && el.attrs.id === id && el.attrs.type === "error"
  );
  return conditionOf(error);
}
