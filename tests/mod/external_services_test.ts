// XEP-0215 over real sockets: the services list, the type filter, TURN REST API credentials
// checked against an independent Web Crypto HMAC, credential requests and their errors, refusal
// of remote and unauthenticated requesters, the disco feature, and configuration errors.

import assert from "node:assert/strict";
import { parseConfigText } from "../../core/config.ts";
import { HOST_OPTIONS } from "../../core/config_schema.ts";
import type { Element } from "../../core/xml/element.ts";
import * as externalServices from "../../mod/external_services.ts";
import { reloadConfiguration } from "../../shell/reload.ts";
import { startDnsResponder } from "../helpers/dns_responder.ts";
import { online, startFederatingServer } from "../helpers/federation.ts";
import { conditionOf, RawClient } from "../helpers/raw_client.ts";
import { createTestCa } from "../helpers/test_ca.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const NS = "urn:xmpp:extdisco:2";
const SECRET = "coturn-shared-secret";

const SERVICES_TOML = `external_service_secret = "${SECRET}"
external_service_ttl = 3600
external_services = [
  { type = "stun", host = "stun.example.net", port = 3478, transport = "udp", name = "STUN" },
  { type = "turn", host = "turn.example.net", port = 3478, transport = "udp" },
  { type = "turn", host = "turn.example.net", port = 3478, transport = "tcp" },
  { type = "turns", host = "turn.example.net", secret = "own-secret" },
  { type = "turn", host = "hidden.example.net", restricted = true },
]`;

/** base64(HMAC-SHA1(secret, text)) computed with Web Crypto, independently of the module. */
async function hmacSha1Base64(secret: string, text: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-1" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...mac));
}

/** Sends an iq get to the host and waits for its answer. */
async function ask(client: RawClient, payload: string, to = "localhost"): Promise<Element> {
  const id = `q-${crypto.randomUUID()}`;
  client.send(`<iq type='get' id='${id}' to='${to}'>${payload}</iq>`);
  return await client.next((el) => el.name === "iq" && el.attrs.id === id);
}

/** Checks one TURN service's credentials the way coturn's use-auth-secret does. */
async function assertTurnCredentials(
  service: Element,
  secret: string,
  user: string,
  ttl: number,
  window: { before: number; after: number },
): Promise<void> {
  const username = service.attrs.username;
  assert.ok(username, "a username");
  const [expiryText, who] = [
    username.slice(0, username.indexOf(":")),
    username.slice(username.indexOf(":") + 1),
  ];
  assert.equal(who, user);
  const expiry = Number(expiryText);
  assert.ok(Number.isInteger(expiry), "the username starts with the expiry time");
  assert.ok(expiry >= Math.floor(window.before / 1000) + ttl, "expiry is now + ttl (not earlier)");
  assert.ok(expiry <= Math.ceil(window.after / 1000) + ttl, "expiry is now + ttl (not later)");
  assert.equal(service.attrs.password, await hmacSha1Base64(secret, username));
  assert.equal(service.attrs.expires, new Date(expiry * 1000).toISOString().replace(".000Z", "Z"));
  assert.equal(service.attrs.restricted, "1");
}

Deno.test("external services: the list has every service, TURN ones with REST API credentials", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "external_services"],
    globalToml: SERVICES_TOML,
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const before = Date.now();
    const result = await ask(client, `<services xmlns='${NS}'/>`);
    const after = Date.now();
    assert.equal(result.attrs.type, "result");
    const list = result.getChild("services", NS)!;
    assert.ok(list, "a <services/> in the extdisco:2 namespace");
    const services = list.getChildren("service", NS);
    assert.deepEqual(
      services.map((s) => `${s.attrs.type} ${s.attrs.host}:${s.attrs.port}/${s.attrs.transport}`),
      [
        "stun stun.example.net:3478/udp",
        "turn turn.example.net:3478/udp",
        "turn turn.example.net:3478/tcp",
        "turns turn.example.net:5349/tcp",
        "turn hidden.example.net:3478/udp",
      ],
    );
    const [stun, turnUdp, turnTcp, turns, hidden] = services;
    assert.equal(stun.attrs.name, "STUN");
    assert.equal(stun.attrs.username, undefined, "STUN needs no credentials");
    assert.equal(stun.attrs.restricted, undefined);
    const window = { before, after };
    await assertTurnCredentials(turnUdp, SECRET, "alice@localhost", 3600, window);
    await assertTurnCredentials(turnTcp, SECRET, "alice@localhost", 3600, window);
    await assertTurnCredentials(turns, "own-secret", "alice@localhost", 3600, window);
    // A restricted service is listed as such; its credentials come on request only.
    assert.equal(hidden.attrs.restricted, "1");
    assert.equal(hidden.attrs.username, undefined);
    assert.equal(hidden.attrs.password, undefined);
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("external services: a type filter lists only that type and is echoed", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["external_services"],
    globalToml: SERVICES_TOML,
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const turn = (await ask(client, `<services xmlns='${NS}' type='turn'/>`))
      .getChild("services", NS)!;
    assert.equal(turn.attrs.type, "turn");
    assert.deepEqual(
      turn.getChildren("service").map((s) => `${s.attrs.type} ${s.attrs.host}`),
      ["turn turn.example.net", "turn turn.example.net", "turn hidden.example.net"],
    );
    const stun = (await ask(client, `<services xmlns='${NS}' type='stun'/>`))
      .getChild("services", NS)!;
    assert.deepEqual(stun.getChildren("service").map((s) => s.attrs.host), ["stun.example.net"]);
    const none = (await ask(client, `<services xmlns='${NS}' type='ftp'/>`))
      .getChild("services", NS)!;
    assert.equal(none.getChildren("service").length, 0);
    // The version 1 namespace of older clients gets the same answer in its own namespace.
    const old = await ask(client, "<services xmlns='urn:xmpp:extdisco:1' type='stun'/>");
    const oldList = old.getChild("services", "urn:xmpp:extdisco:1")!;
    assert.deepEqual(
      oldList.getChildren("service", "urn:xmpp:extdisco:1").map((s) => s.attrs.host),
      [
        "stun.example.net",
      ],
    );
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("external services: credentials for one service, by host and type, optionally port", async () => {
  const t = await startTestServer({
    users: { bob: "pw" },
    modules: ["external_services"],
    globalToml: SERVICES_TOML,
  });
  try {
    const { client } = await RawClient.login(t.port, "bob", "pw");
    const before = Date.now();
    const hidden = await ask(
      client,
      `<credentials xmlns='${NS}'><service host='hidden.example.net' type='turn'/></credentials>`,
    );
    const after = Date.now();
    assert.equal(hidden.attrs.type, "result");
    const [one] = hidden.getChild("credentials", NS)!.getChildren("service", NS);
    assert.equal(one.attrs.host, "hidden.example.net");
    assert.equal(one.attrs.port, "3478");
    await assertTurnCredentials(one, SECRET, "bob@localhost", 3600, { before, after });
    // Same host and type on two transports: both, unless the port narrows it down.
    const both = await ask(
      client,
      `<credentials xmlns='${NS}'><service host='turn.example.net' type='turn'/></credentials>`,
    );
    assert.deepEqual(
      both.getChild("credentials", NS)!.getChildren("service").map((s) => s.attrs.transport),
      ["udp", "tcp"],
    );
    const turns = await ask(
      client,
      `<credentials xmlns='${NS}'><service host='turn.example.net' type='turns' port='5349'/></credentials>`,
    );
    const [tls] = turns.getChild("credentials", NS)!.getChildren("service");
    await assertTurnCredentials(tls, "own-secret", "bob@localhost", 3600, {
      before,
      after: Date.now(),
    });
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("external services: unknown services and malformed credential requests get errors", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["external_services"],
    globalToml: SERVICES_TOML,
  });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    const cases: [string, string][] = [
      ["<service host='nowhere.example.net' type='turn'/>", "item-not-found"],
      ["<service host='turn.example.net' type='turn' port='9999'/>", "item-not-found"],
      ["<service host='stun.example.net' type='stun'/>", "item-not-found"],
      ["<service type='turn'/>", "bad-request"],
      ["<service host='turn.example.net' type='turn' port='x'/>", "bad-request"],
      ["", "bad-request"],
    ];
    for (const [service, condition] of cases) {
      const answer = await ask(client, `<credentials xmlns='${NS}'>${service}</credentials>`);
      assert.equal(answer.attrs.type, "error", service);
      assert.equal(conditionOf(answer), condition, service);
    }
    // The server is still there and answering.
    const list = await ask(client, `<services xmlns='${NS}'/>`);
    assert.equal(list.attrs.type, "result");
    client.close();
  } finally {
    await t.stop();
  }
});

Deno.test("external services: the disco feature only when services are configured", async () => {
  const discoInfo = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
  const features = (answer: Element) =>
    answer.getChild("query")!.getChildren("feature").map((f) => f.attrs.var);
  const bare = await startTestServer({ users: { alice: "pw" } });
  try {
    assert.ok(HOST_OPTIONS.modules.default.includes("external_services"), "a default module");
    assert.ok(bare.server.modules.isLoaded("localhost", "external_services"));
    const { client } = await RawClient.login(bare.port, "alice", "pw");
    assert.ok(!features(await ask(client, discoInfo)).includes(NS));
    // Without services the query is not answered by this module: the router's default.
    const answer = await ask(client, `<services xmlns='${NS}'/>`);
    assert.equal(conditionOf(answer), "service-unavailable");
    client.close();
  } finally {
    await bare.stop();
  }
  const configured = await startTestServer({ users: { alice: "pw" }, globalToml: SERVICES_TOML });
  try {
    const { client } = await RawClient.login(configured.port, "alice", "pw");
    const found = features(await ask(client, discoInfo));
    assert.ok(found.includes(NS));
    assert.ok(found.includes("urn:xmpp:extdisco:1"));
    client.close();
  } finally {
    await configured.stop();
  }
});

Deno.test("external services: a stanza before authentication gets no services", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["external_services"],
    globalToml: SERVICES_TOML,
  });
  try {
    const client = await RawClient.connect(t.port);
    await client.open();
    await client.starttls();
    client.send(`<iq type='get' id='early' to='localhost'><services xmlns='${NS}'/></iq>`);
    await client.waitClosed();
    assert.ok(!client.text.includes("turn.example.net"), "no services before login");
    assert.match(client.text, /not-authorized/);
  } finally {
    await t.stop();
  }
});

Deno.test("external services: users of another server are refused over federation", async () => {
  const dns = await startDnsResponder();
  const ca = await createTestCa();
  const common = { dns, ca, users: { alice: "pw" }, modules: ["roster", "presence"] };
  const a = await startFederatingServer({
    ...common,
    domain: "a.test",
    modules: ["roster", "presence", "external_services"],
    globalToml: SERVICES_TOML,
  });
  const b = await startFederatingServer({ ...common, domain: "b.test" });
  try {
    const local = await online(a.port, "alice", "a.test");
    const own = await ask(local, `<services xmlns='${NS}'/>`, "a.test");
    assert.equal(own.attrs.type, "result");
    const remote = await online(b.port, "alice", "b.test");
    const id = "remote-services";
    remote.send(`<iq type='get' id='${id}' to='a.test'><services xmlns='${NS}'/></iq>`);
    const refused = await remote.next((el) => el.attrs.id === id, 10_000);
    assert.equal(refused.attrs.type, "error");
    assert.equal(conditionOf(refused), "forbidden");
    assert.ok(!refused.toString().includes("password"));
    remote.send(
      `<iq type='get' id='remote-cred' to='a.test'><credentials xmlns='${NS}'>` +
        "<service host='turn.example.net' type='turn'/></credentials></iq>",
    );
    const noCredentials = await remote.next((el) => el.attrs.id === "remote-cred", 10_000);
    assert.equal(conditionOf(noCredentials), "forbidden");
    local.close();
    remote.close();
  } finally {
    await a.stop();
    await b.stop();
    await dns.close();
  }
});

Deno.test("external services: a bad entry is a config error at its file:line", () => {
  const file = "/etc/lilt/lilt.toml";
  const check = (toml: string) =>
    parseConfigText(`${toml}\n[[host]]\ndomain = "localhost"\n`, file, {
      moduleOptions: externalServices.options,
    });
  const good = check(SERVICES_TOML);
  assert.ok(good.config, JSON.stringify(good.problems));
  const bad = check(`external_services = [
  { type = "stun", host = "stun.example.net" },
  { type = "tunr", host = "turn.example.net" },
  { type = "turn", host = "turn.example.net",
    port = 70000 },
  { type = "turn", host = "turn:example.net", transport = "sctp" },
  { host = "stun.example.net", secret = 5 },
  { type = "stun", host = "stun.example.net", secret = "x", protocol = "udp" },
]`);
  assert.equal(bad.config, undefined);
  const errors = bad.problems.filter((p) => p.severity === "error")
    .map((p) => `${p.line}: ${p.message}`);
  assert.deepEqual(errors, [
    "3: option 'external_services' entry 2: 'type' must be one of stun, stuns, turn, turns, " +
    'found string "tunr"',
    "5: option 'external_services' entry 3: 'port' must be an integer from 1 to 65535, found " +
    "number 70000",
    "6: option 'external_services' entry 4: 'host' must be a host name or IP address such as " +
    '"turn.example.com", found string "turn:example.net"',
    "6: option 'external_services' entry 4: 'transport' must be \"udp\" or \"tcp\", found string " +
    '"sctp"',
    "7: option 'external_services' entry 5: 'type' is missing (one of stun, stuns, turn, turns)",
    "7: option 'external_services' entry 5: 'secret' must be a non-empty string, found number 5",
    "8: option 'external_services' entry 6: unknown key 'protocol' (expected type, host, port, " +
    "transport, name, restricted, secret)",
    "8: option 'external_services' entry 6: 'secret' is for turn and turns services; a stun " +
    "service needs no credentials",
  ]);
  // The same as [[external_services]] tables.
  const tables = check(`[[external_services]]
type = "turns"
host = "turn.example.net"

[[external_services]]
type = "turn"
restricted = "yes"
`);
  assert.deepEqual(
    tables.problems.filter((p) => p.severity === "error").map((p) => `${p.line}: ${p.message}`),
    [
      "5: option 'external_services' entry 2: 'host' is missing (the STUN/TURN server's name or " +
      "address)",
      "7: option 'external_services' entry 2: 'restricted' must be true or false, found string " +
      '"yes"',
    ],
  );
  const ttl = check("external_service_ttl = 5");
  assert.match(
    ttl.problems.map((p) => `${p.line}: ${p.message}`).join("\n"),
    /^1: option 'external_service_ttl' must be at least 60, found 5$/m,
  );
});

Deno.test("external services: a TURN service without a secret stops the start with file:line", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    await assert.rejects(
      startTestServer({
        dataDir,
        modules: ["external_services"],
        globalToml: 'external_services = [{ type = "turn", host = "turn.example.net" }]',
      }),
      (error: Error) => {
        assert.match(
          error.message,
          new RegExp(
            `^${dataDir}/test\\.toml:\\d+: Option 'external_services' of module ` +
              "'external_services' entry 1: a turn service needs the secret shared with the " +
              "TURN server: set external_service_secret",
          ),
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("external services: a reload applies added and changed services", async () => {
  const modules = ["disco", "external_services"];
  const t = await startTestServer({ users: { alice: "pw" }, modules });
  try {
    const { client } = await RawClient.login(t.port, "alice", "pw");
    assert.equal(
      conditionOf(await ask(client, `<services xmlns='${NS}'/>`)),
      "service-unavailable",
    );
    const reload = async (globalToml: string) => {
      await Deno.writeTextFile(t.config.file, testConfigText(t.dataDir, { modules, globalToml }));
      const result = await reloadConfiguration(t.server);
      assert.ok(result.ok, result.error);
    };
    await reload(SERVICES_TOML);
    const hosts = async () =>
      (await ask(client, `<services xmlns='${NS}' type='turn'/>`)).getChild("services", NS)!
        .getChildren("service").map((s) => s.attrs.host);
    assert.deepEqual(await hosts(), ["turn.example.net", "turn.example.net", "hidden.example.net"]);
    await reload(SERVICES_TOML.replaceAll("turn.example.net", "relay.example.net"));
    assert.deepEqual(await hosts(), [
      "relay.example.net",
      "relay.example.net",
      "hidden.example.net",
    ]);
    client.close();
  } finally {
    await t.stop();
  }
});
