// The benchmark load client's PEP side must speak XEP-0115 as Lilt checks it: a wrong caps hash
// would make the pep workload wait for notifications that never come. Its WebSocket workloads must
// speak RFC 7395 as Lilt serves it (run against an in-process server). No figure is asserted.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readDiscoInfo } from "../../../mod/caps.ts";
import { capsVerificationString } from "../../../mod/disco.ts";
import { parseElement } from "../../../core/xml/parser.ts";
import { startTestServer } from "../../helpers/test_server.ts";
import {
  capsVer,
  discoInfoResult,
  notifiedItem,
  roomStanza,
} from "../../../scripts/bench/load_client.ts";

Deno.test("load client: its disco#info answer hashes to the ver of its caps presence", async () => {
  const answer = parseElement(
    discoInfoResult(
      "<iq type='get' id='disco' from='bench0@localhost' to='bench1@localhost/pep'>" +
        "<query xmlns='http://jabber.org/protocol/disco#info' node='https://lilt.invalid/bench#v'/></iq>",
    ),
  );
  assert.equal(answer.attrs.id, "disco");
  assert.equal(answer.attrs.to, "bench0@localhost");
  const query = answer.getChild("query", "http://jabber.org/protocol/disco#info")!;
  assert.equal(query.attrs.node, "https://lilt.invalid/bench#v");
  const info = readDiscoInfo(query);
  assert.equal(info.problem, undefined);
  assert.equal(info.features.includes("http://jabber.org/protocol/tune+notify"), true);
  const ver = createHash("sha1")
    .update(capsVerificationString(info.identities, info.features, info.forms), "utf8")
    .digest("base64");
  assert.equal(await capsVer(), ver);
});

Deno.test("load client: a PEP notification gives its item id, other messages none", () => {
  assert.equal(
    notifiedItem(
      "<message from='bench0@localhost' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>" +
        "<items node='http://jabber.org/protocol/tune'><item publisher='bench0@localhost' id='m7'>" +
        "<tune xmlns='http://jabber.org/protocol/tune'/></item></items></event></message>",
    ),
    "m7",
  );
  assert.equal(notifiedItem("<message><body>hi</body></message>"), undefined);
});

Deno.test("load client: room stanzas are told apart (deliveries, own join, creation, errors)", () => {
  const room = "bench@conference.localhost";
  assert.deepEqual(
    roomStanza(
      `<message from='${room}/o3' to='bench1@localhost/muc' type='groupchat' id='x'>` +
        "<body>m42 xxxx</body><stanza-id xmlns='urn:xmpp:sid:0' id='1' by='" + room +
        "'/></message>",
      room,
    ),
    { kind: "delivery", id: "m42" },
  );
  // the subject on join and chat messages are not deliveries
  assert.deepEqual(
    roomStanza(`<message from='${room}' type='groupchat'><subject/></message>`, room),
    { kind: "other" },
  );
  assert.deepEqual(
    roomStanza("<message from='bench2@localhost' type='chat'><body>m1 x</body></message>", room),
    { kind: "other" },
  );
  assert.deepEqual(
    roomStanza(
      `<presence from="${room}/o0"><x xmlns="http://jabber.org/protocol/muc#user">` +
        '<item affiliation="owner" role="moderator"/><status code="110"/><status code="201"/></x></presence>',
      room,
    ),
    { kind: "self", created: true },
  );
  assert.deepEqual(
    roomStanza(
      `<presence from='${room}/o5'><x xmlns='http://jabber.org/protocol/muc#user'>` +
        "<item affiliation='none' role='participant'/><status code='110'/></x></presence>",
      room,
    ),
    { kind: "self", created: false },
  );
  assert.deepEqual(
    roomStanza(
      `<presence from='${room}/o6'><x xmlns='http://jabber.org/protocol/muc#user'>` +
        "<item affiliation='none' role='participant'/></x></presence>",
      room,
    ),
    { kind: "presence" },
  );
  assert.deepEqual(
    roomStanza(`<presence from='other@conference.localhost/o6'/>`, room),
    { kind: "other" },
  );
  const refused = `<presence from='${room}/o7' type='error'><error type='wait'>` +
    "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>";
  assert.deepEqual(roomStanza(refused, room), { kind: "error", text: refused });
});

/** Runs load_client.ts for one WebSocket workload against an in-process server; its JSON. */
async function runWebSocketWorkload(
  workload: string,
  extra: string[],
): Promise<Record<string, Record<string, unknown>>> {
  const users: Record<string, string> = {};
  for (let i = 0; i < 6; i++) users[`bench${i}`] = "benchpass";
  const t = await startTestServer({ users, globalToml: 'http_interfaces = ["127.0.0.1:0"]' });
  const keys = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../../scripts/bench/load_client.ts", import.meta.url).pathname,
        `--port=${t.port}`,
        `--ws-url=ws://localhost:${t.server.port("http")}/xmpp-websocket`,
        // the server runs in this process: its CPU is read from this process's /proc entry
        `--pid=${Deno.pid}`,
        "--accounts=6",
        "--warmup=2",
        `--workload=${workload}`,
        `--keys=${keys}`,
        ...extra,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = await child.output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return JSON.parse(lines[lines.length - 1]);
  } finally {
    await Deno.remove(keys);
    await t.stop();
  }
}

Deno.test("load client: ws-login logs in over RFC 7395 WebSocket (SCRAM, bind, presence, roster)", async () => {
  const result = await runWebSocketWorkload("ws-login", ["--logins=4", "--concurrency=2"]);
  const login = result["ws-login"];
  assert.deepEqual(login.errors, { count: 0, first: [] });
  assert.equal(login.sessions, 4);
  const warmup = login.warmup as Record<string, unknown>;
  assert.equal(warmup.sessions, 2);
  assert.equal(warmup.messages, 400); // the warm-up pair's messages went over WebSocket too
});

Deno.test("load client: ws-messages relays chat messages between WebSocket clients", async () => {
  const result = await runWebSocketWorkload("ws-messages", [
    "--pairs=2",
    "--seconds=1",
    "--warmup=0",
    "--open-rate=200",
  ]);
  const messages = result["ws-messages"];
  assert.deepEqual(messages.errors, { count: 0, first: [] });
  assert.equal(messages.pairs, 2);
  assert.ok((messages.saturation_msgs_per_s as number) > 0);
  assert.equal(messages.open_rate_to_match, 200);
  assert.ok((messages.open_sent as number) > 0);
  assert.equal(messages.open_delivered, messages.open_sent);
});
