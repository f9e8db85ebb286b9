// The admin shell's `muc` section against a running server with `conference.localhost`: each
// command, what occupants on real sockets see of it (kick 307, affiliation changes, destroy, a
// message from the room), its errors, and one-shot `lilt shell muc ... --json` over the socket.

import assert from "node:assert/strict";
import { CommandError, type CommandResult } from "../../../core/admin_commands.ts";
import type { Element } from "../../../core/xml/element.ts";
import { serialize } from "../../../core/xml/serializer.ts";
import { startAdminSocket } from "../../../shell/admin_socket.ts";
import type { RawClient } from "../../helpers/raw_client.ts";
import { testConfigText, type TestServer } from "../../helpers/test_server.ts";
import {
  createInstantRoom,
  itemOf,
  join,
  messageFrom,
  MUC,
  NS_USER,
  presenceFrom,
  statuses,
  world,
} from "./helpers.ts";
import { runLilt } from "../../helpers/lilt_process.ts";

const ROOM = `lounge@${MUC}`;

async function muc(t: TestServer, name: string, ...args: string[]) {
  const spec = t.server.commands.get("muc", name);
  assert.ok(spec, `the command muc ${name} is registered`);
  // deno-lint-ignore no-explicit-any
  const result: CommandResult & { data?: any } = await spec.run(
    { server: t.server, emit: () => {}, signal: new AbortController().signal },
    args,
  );
  return result;
}

async function refused(t: TestServer, pattern: RegExp, name: string, ...args: string[]) {
  await assert.rejects(() => muc(t, name, ...args), (error: unknown) => {
    assert.ok(error instanceof CommandError, String(error));
    assert.match(error.message, pattern);
    return true;
  });
}

/** The next unavailable presence from an occupant JID. */
function leftFrom(client: RawClient, nick: string): Promise<Element> {
  return client.next((el) =>
    el.name === "presence" && el.attrs.from === `${ROOM}/${nick}` &&
    el.attrs.type === "unavailable"
  );
}

/** Alice owns `lounge` (nick Alice) and Bob is in it (nick Bob). */
async function lounge(users = ["alice", "bob"]) {
  const w = await world(users);
  const { alice, bob } = w.clients;
  await createInstantRoom(alice, "lounge", "Alice");
  await join(bob, "lounge", "Bob");
  await presenceFrom(alice, `${ROOM}/Bob`);
  return w;
}

Deno.test("muc list, room, occupants and affiliations show rooms as they are", async () => {
  const w = await lounge();
  const { t, clients: { alice } } = w;
  try {
    alice.send(`<message to='${ROOM}' type='groupchat'><subject>Tea</subject></message>`);
    await messageFrom(alice, `${ROOM}/Alice`);

    const listed = await muc(t, "list");
    assert.deepEqual(listed.data, [
      { jid: ROOM, name: "", occupants: 2, persistent: false },
    ]);
    assert.deepEqual((await muc(t, "list", MUC)).data, listed.data);
    await refused(t, /No MUC service at 'localhost'/, "list", "localhost");

    const room = await muc(t, "room", ROOM);
    assert.equal(room.data.subject, "Tea");
    assert.equal(room.data.subject_by, "Alice");
    assert.equal(room.data.config.persistent, false);
    assert.equal(room.data.config.passwordProtected, false);
    assert.equal(room.data.config.password, undefined, "the password is not shown");
    assert.deepEqual(
      room.data.occupants.map((o: { nick: string; role: string; affiliation: string }) => [
        o.nick,
        o.role,
        o.affiliation,
      ]),
      [["Alice", "moderator", "owner"], ["Bob", "participant", "none"]],
    );
    assert.deepEqual(room.data.affiliations, [
      { jid: "alice@localhost", affiliation: "owner", nick: undefined, reason: undefined },
    ]);
    assert.match(room.message ?? "", /Subject: Tea \(set by Alice\)/);
    assert.match(room.message ?? "", /Bob: participant, none \(bob@localhost\)/);

    const occupants = await muc(t, "occupants", ROOM);
    assert.deepEqual(occupants.table?.rows, [
      ["Alice", "moderator", "owner", "alice@localhost"],
      ["Bob", "participant", "none", "bob@localhost"],
    ]);
    const affiliations = await muc(t, "affiliations", ROOM);
    assert.deepEqual(affiliations.table?.rows, [["alice@localhost", "owner", "", ""]]);

    await refused(t, /No room 'nope@conference.localhost'/, "room", `nope@${MUC}`);
    await refused(t, /Expected a room JID/, "room", MUC);
    await refused(t, /Expected a room JID/, "occupants", `${ROOM}/Bob`);
    await refused(t, /No MUC service at 'elsewhere.example'/, "room", "x@elsewhere.example");
  } finally {
    await w.end();
  }
});

Deno.test("muc create makes a persistent, unlocked room its owner enters as owner", async () => {
  const w = await world(["alice", "bob"]);
  const { t, clients: { alice, bob } } = w;
  try {
    const created = await muc(t, "create", `news@${MUC}`, "alice@localhost/phone");
    assert.deepEqual(created.data, {
      jid: `news@${MUC}`,
      owner: "alice@localhost",
      persistent: true,
    });
    const shown = await muc(t, "room", `news@${MUC}`);
    assert.equal(shown.data.locked, false);
    assert.equal(shown.data.config.persistent, true);

    // Not locked: a non-owner may enter at once, and the owner is not told it was just created.
    const bobSees = await join(bob, "news", "Bob");
    assert.ok(bobSees.every((el) => !statuses(el).includes(201)));
    const aliceSees = await join(alice, "news", "Alice");
    const own = aliceSees.find((el) => el.attrs.from === `news@${MUC}/Alice`)!;
    assert.ok(statuses(own).includes(110) && !statuses(own).includes(201), serialize(own));
    assert.equal(itemOf(own).affiliation, "owner");
    assert.equal(itemOf(own).role, "moderator");

    // Without an owner, persistent rooms stay when empty.
    await muc(t, "create", `empty@${MUC}`);
    assert.deepEqual((await muc(t, "room", `empty@${MUC}`)).data.affiliations, []);
    assert.deepEqual(
      (await muc(t, "list", MUC)).data.map((r: { jid: string }) => r.jid),
      [`empty@${MUC}`, `news@${MUC}`],
    );

    await refused(t, /already exists/, "create", `news@${MUC}`);
    await refused(t, /Expected an owner's JID/, "create", `other@${MUC}`, "localhost");
    await refused(t, /Expected a room JID/, "create", "not a jid@@");
  } finally {
    await w.end();
  }
});

Deno.test("muc kick removes an occupant with 307 and the reason; others see 307", async () => {
  const w = await lounge();
  const { t, clients: { alice, bob } } = w;
  try {
    const result = await muc(t, "kick", ROOM, "Bob", "Too loud");
    assert.deepEqual(result.data, { room: ROOM, nick: "Bob", reason: "Too loud" });
    const own = await leftFrom(bob, "Bob");
    assert.deepEqual(statuses(own), [110, 307]);
    assert.equal(own.getChild("x", NS_USER)?.getChild("item")?.getChildText("reason"), "Too loud");
    assert.deepEqual(statuses(await leftFrom(alice, "Bob")), [307]);
    assert.deepEqual(
      (await muc(t, "occupants", ROOM)).data.map((o: { nick: string }) => o.nick),
      ["Alice"],
    );

    await refused(t, /No occupant 'Bob' in lounge@conference.localhost/, "kick", ROOM, "Bob");
    await refused(t, /Expected a nick/, "kick", ROOM);
  } finally {
    await w.end();
  }
});

Deno.test("muc set_affiliation changes roles for occupants, bans with 301, keeps an owner", async () => {
  const w = await lounge();
  const { t, clients: { alice, bob } } = w;
  try {
    const made = await muc(t, "set_affiliation", ROOM, "bob@localhost", "admin");
    assert.deepEqual(made.data, { room: ROOM, jid: "bob@localhost", affiliation: "admin" });
    const seen = await presenceFrom(alice, `${ROOM}/Bob`);
    assert.deepEqual([itemOf(seen).affiliation, itemOf(seen).role], ["admin", "moderator"]);
    const own = await presenceFrom(bob, `${ROOM}/Bob`);
    assert.deepEqual(statuses(own), [110]);
    assert.equal(itemOf(own).affiliation, "admin");

    await muc(t, "set_affiliation", ROOM, "bob@localhost", "outcast", "Spam");
    const banned = await leftFrom(bob, "Bob");
    assert.deepEqual(statuses(banned), [110, 301]);
    assert.deepEqual(statuses(await leftFrom(alice, "Bob")), [301]);
    assert.deepEqual((await muc(t, "affiliations", ROOM)).table?.rows, [
      ["alice@localhost", "owner", "", ""],
      ["bob@localhost", "outcast", "", "Spam"],
    ]);

    // Affiliations of users outside the room are kept too; "none" removes one.
    await muc(t, "set_affiliation", ROOM, "carol@localhost", "member");
    await muc(t, "set_affiliation", ROOM, "carol@localhost", "none");
    assert.deepEqual(
      (await muc(t, "affiliations", ROOM)).data.map((a: { jid: string }) => a.jid),
      ["alice@localhost", "bob@localhost"],
    );

    await refused(
      t,
      /A room keeps at least one owner/,
      "set_affiliation",
      ROOM,
      "alice@localhost",
      "member",
    );
    await refused(t, /Expected an affiliation/, "set_affiliation", ROOM, "bob@localhost", "boss");
    await refused(t, /Expected a JID/, "set_affiliation", ROOM, "localhost", "member");
  } finally {
    await w.end();
  }
});

Deno.test("muc say sends a groupchat from the room's JID to every occupant", async () => {
  const w = await lounge(["alice", "bob", "carol"]);
  const { t, clients: { alice, bob, carol } } = w;
  try {
    const result = await muc(t, "say", ROOM, "Maintenance at noon");
    assert.deepEqual(result.data, { room: ROOM, delivered: 2 });
    for (const client of [alice, bob]) {
      const message = await messageFrom(client, ROOM);
      assert.equal(message.attrs.type, "groupchat");
      assert.equal(message.getChildText("body"), "Maintenance at noon");
      // Rooms archive by default (muc_log_by_default): the message has the room's stanza-id.
      assert.ok(message.getChild("stanza-id", "urn:xmpp:sid:0")?.attrs.id, serialize(message));
    }
    // Kept like an occupant's message: a newcomer gets it in the history, delayed.
    const seen = await join(carol, "lounge", "Carol");
    const kept = seen.find((el) => el.name === "message" && el.attrs.from === ROOM);
    assert.equal(kept?.getChildText("body"), "Maintenance at noon");
    assert.equal(kept?.getChild("delay", "urn:xmpp:delay")?.attrs.from, ROOM);
    await refused(t, /Expected the message text/, "say", ROOM);
  } finally {
    await w.end();
  }
});

Deno.test("muc destroy tells occupants with the alternate venue and reason; the room is gone", async () => {
  const w = await lounge();
  const { t, clients: { alice, bob } } = w;
  try {
    await refused(t, /Expected an alternate room JID/, "destroy", ROOM, "a@@b");
    const result = await muc(t, "destroy", ROOM, `new@${MUC}`, "Moved on");
    assert.deepEqual(result.data, {
      jid: ROOM,
      alternate: `new@${MUC}`,
      reason: "Moved on",
      occupants: 2,
    });
    for (const client of [alice, bob]) {
      const gone = await leftFrom(client, client === alice ? "Alice" : "Bob");
      const destroy = gone.getChild("x", NS_USER)?.getChild("destroy");
      assert.equal(destroy?.attrs.jid, `new@${MUC}`);
      assert.equal(destroy?.getChildText("reason"), "Moved on");
    }
    assert.deepEqual((await muc(t, "list")).data, []);

    // "-" for no alternate venue.
    await muc(t, "create", `kept@${MUC}`);
    const plain = await muc(t, "destroy", `kept@${MUC}`, "-");
    assert.deepEqual(plain.data, {
      jid: `kept@${MUC}`,
      alternate: null,
      reason: null,
      occupants: 0,
    });
    await refused(t, /No room 'kept@conference.localhost'/, "destroy", `kept@${MUC}`);
  } finally {
    await w.end();
  }
});

Deno.test("rooms created and changed from the shell survive a restart; destroyed ones do not", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-muc-shell-" });
  try {
    const first = await world(["alice"], { dataDir });
    try {
      await muc(first.t, "create", `news@${MUC}`, "alice@localhost");
      await muc(first.t, "set_affiliation", `news@${MUC}`, "bob@localhost", "member");
      await muc(first.t, "create", `gone@${MUC}`);
      await muc(first.t, "destroy", `gone@${MUC}`);
    } finally {
      await first.end();
    }
    const second = await world(["alice"], { dataDir });
    try {
      assert.deepEqual(
        (await muc(second.t, "list")).data.map((r: { jid: string }) => r.jid),
        [`news@${MUC}`],
      );
      assert.deepEqual((await muc(second.t, "affiliations", `news@${MUC}`)).table?.rows, [
        ["alice@localhost", "owner", "", ""],
        ["bob@localhost", "member", "", ""],
      ]);
    } finally {
      await second.end();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

function lilt(args: string[]) {
  return runLilt(args);
}

Deno.test("lilt shell muc ... --json answers over the admin socket", async () => {
  const w = await lounge();
  const { t, clients: { bob } } = w;
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  const file = `${t.dataDir}/client.toml`;
  await Deno.writeTextFile(file, testConfigText(t.dataDir, { modules: [] }));
  const shell = (...args: string[]) => lilt(["shell", "-c", file, "muc", ...args, "--json"]);
  try {
    const listed = await shell("list");
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(JSON.parse(listed.stdout), [
      { jid: ROOM, name: "", occupants: 2, persistent: false },
    ]);

    const kicked = await shell("kick", ROOM, "Bob", "Bye", "now");
    assert.equal(kicked.code, 0, kicked.stderr);
    assert.deepEqual(JSON.parse(kicked.stdout), { room: ROOM, nick: "Bob", reason: "Bye now" });
    assert.deepEqual(statuses(await leftFrom(bob, "Bob")), [110, 307]);

    const missing = await shell("room", `nope@${MUC}`);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "");
    assert.equal(missing.stderr, "lilt: No room 'nope@conference.localhost'\n");
  } finally {
    await admin.close();
    await w.end();
  }
});
