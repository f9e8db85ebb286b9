// Real XMPP clients against a real Lilt server over TLS: xmpp.js and Debian's python3-slixmpp
// with their default settings over STARTTLS and direct TLS (no failed SASL attempt on the way),
// xmpp.js with SCRAM-SHA-256 and slixmpp with SCRAM-SHA-1, and both in one MUC room. All
// verify the server certificate against a CA the test makes.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { makeTestCa } from "../helpers/test_ca.ts";
import { startTestServer } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = "/usr/bin/python3";

/** A full JID bound with Bind2: the client's tag, a dot and 8 hex digits. */
const BIND2_RESOURCE = (user: string, tag: string) =>
  new RegExp(`^${user}@localhost/${tag}\\.[0-9a-f]{8}$`);

async function runProcess(cmd: string, args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr).trim();
  const last = stdout.split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(`${cmd} printed no JSON (exit ${output.code}):\n${stdout}\n${stderr}`);
  }
}

/** Ports and trust anchor a client process gets. */
interface ClientTarget {
  port: number;
  tlsPort: number;
  caFile: string;
}

/**
 * Starts a server with a CA-signed certificate and the accounts alice and bob, runs one
 * client process against it and returns the JSON line it printed.
 */
/** The JSON a client script printed (its shape depends on the script). */
// deno-lint-ignore no-explicit-any
type ClientResult = any;

async function withClient(
  command: (target: ClientTarget) => [string, string[], Record<string, string>?],
  extraGlobalToml = "",
  extraToml = "",
): Promise<ClientResult> {
  const dir = await Deno.makeTempDir({ prefix: "lilt-ca-" });
  const certs = await makeTestCa(dir, ["localhost"]);
  const t = await startTestServer({
    globalToml: `certificate = ${JSON.stringify(certs.certFile)}\nkey = ${
      JSON.stringify(certs.keyFile)
    }\n${extraGlobalToml}`,
    users: { alice: "alice-secret", bob: "bob-secret" },
    extraToml,
  });
  try {
    const [cmd, args, env] = command({ port: t.port, tlsPort: t.tlsPort, caFile: certs.caFile });
    return await runProcess(cmd, args, env);
  } finally {
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function xmppjs(mode: string) {
  return ({ port, caFile }: ClientTarget): [string, string[], Record<string, string>] => [
    Deno.execPath(),
    ["run", "-A", "tests/interop/xmppjs_client.ts", String(port), mode],
    { DENO_CERT: caFile },
  ];
}

function slixmpp(mode: string) {
  return ({ tlsPort, caFile }: ClientTarget): [string, string[]] => [
    PYTHON,
    ["tests/interop/slixmpp_client.py", String(tlsPort), caFile, mode],
  ];
}

Deno.test("xmpp.js logs in over STARTTLS with SCRAM-SHA-256 and exchanges a message", async () => {
  const result = await withClient(xmppjs("exchange"));
  assert.deepEqual(result.mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-256"]);
  // xmpp.js binds with Bind2 (XEP-0386) when offered: its resource becomes a tag the server
  // completes with a suffix stable for the client installation.
  assert.match(result.aliceJid, BIND2_RESOURCE("alice", "laptop"));
  assert.match(result.bobJid, BIND2_RESOURCE("bob", "phone"));
  assert.deepEqual(result.message, { from: result.bobJid, body: "hello from xmpp.js" });
  assert.equal(result.pingType, "result");
});

Deno.test("xmpp.js with a wrong password gets not-authorized", async () => {
  const result = await withClient(xmppjs("wrong-password"));
  assert.equal(result.condition, "not-authorized");
});

async function requireSlixmpp(): Promise<void> {
  const probe = await new Deno.Command(PYTHON, { args: ["-c", "import slixmpp"], stderr: "null" })
    .output().catch(() => undefined);
  if (!probe?.success) {
    throw new Error(
      "Debian's python3-slixmpp is missing: run scripts/install-test-deps as root " +
        "(or: sudo apt-get install python3-slixmpp)",
    );
  }
}

Deno.test("slixmpp logs in over direct TLS with SCRAM-SHA-1 and exchanges a message", async () => {
  await requireSlixmpp();
  const result = await withClient(slixmpp("exchange"));
  assert.equal(result.error, undefined, result.error);
  assert.deepEqual(result.states, ["bound", "bound"]);
  assert.equal(result.mechanism, "SCRAM-SHA-1");
  assert.deepEqual(result.message, { from: "bob@localhost/py", body: "hello from slixmpp" });
});

Deno.test("slixmpp with a wrong password gets not-authorized", async () => {
  await requireSlixmpp();
  const result = await withClient(slixmpp("wrong-password"));
  assert.equal(result.error, undefined, result.error);
  assert.match(result.state, /^failed:.*not-authorized/);
});

Deno.test("slixmpp subscribes both ways and gets an offline message with a delay stamp", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_im_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.alice_sees, "both");
  assert.equal(result.bob_sees, "both");
  assert.deepEqual(result.offline, {
    body: "while you were away",
    from: "bob@localhost/py",
    delay_from: "localhost",
    has_stamp: true,
  });
});

Deno.test("slixmpp resumes its session after the connection is cut and gets the message once", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_resume_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.enabled, true, "slixmpp enabled stream management");
  assert.equal(result.resumed, true, `resumed (events: ${result.events})`);
  assert.equal(result.session_starts, 1, "no second login");
  assert.deepEqual(result.bodies, ["before the cut", "while you were away"]);
});

Deno.test("slixmpp's XEP-0313 plugin pages through a conversation both ways", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_mam_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  const conversation = [1, 2, 3, 4, 5].flatMap((n) => [`bob ${n}`, `alice ${n}`]);
  assert.deepEqual(result.delivered, [1, 2, 3, 4, 5].map((n) => `bob ${n}`));
  // Pages of three, oldest first; then from the newest end, each page still in time order.
  const bodies = (pages: { bodies: string[] }[]) => pages.map((p) => p.bodies);
  assert.deepEqual(bodies(result.forward), [
    conversation.slice(0, 3),
    conversation.slice(3, 6),
    conversation.slice(6, 9),
    conversation.slice(9),
  ]);
  assert.deepEqual(bodies(result.backward), [
    conversation.slice(7),
    conversation.slice(4, 7),
    conversation.slice(1, 4),
    conversation.slice(0, 1),
  ]);
  // bob's messages were delivered with the ids the archive pages carry.
  const ids = result.forward.flatMap((p: { ids: string[] }) => p.ids);
  assert.equal(new Set(ids).size, 10);
  assert.deepEqual(result.stanza_ids, ids.filter((_: string, i: number) => i % 2 === 0));
});

Deno.test("slixmpp's XEP-0060 plugin publishes to pubsub.localhost and a subscriber is notified", async () => {
  await requireSlixmpp();
  const result = await withClient(
    ({ tlsPort, caFile }) => [
      PYTHON,
      ["tests/interop/slixmpp_pubsub_client.py", String(tlsPort), caFile],
    ],
    "",
    '[[component]]\ndomain = "pubsub.localhost"\nmodules = ["disco", "pubsub"]\n',
  );
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.subscription, "subscribed");
  assert.ok(result.generated_id, "the service generated an item id");
  assert.deepEqual(result.published, [
    { from: "pubsub.localhost", node: "news", id: "first", text: "hello" },
    { from: "pubsub.localhost", node: "news", id: result.generated_id, text: "second" },
  ]);
  assert.deepEqual(result.retracted, ["first"]);
  assert.deepEqual(result.items, [result.generated_id]);
});

Deno.test("slixmpp's XEP-0163 and XEP-0172 plugins: a contact whose caps ask gets the nickname and OMEMO device list", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_pep_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.both, true);
  assert.deepEqual(result.nicks[0], { from: "alice@localhost", nick: "Alice in PEP" });
  assert.deepEqual(result.device_lists[0], { from: "alice@localhost", ids: ["4242"] });
});

Deno.test("slixmpp's XEP-0048 bookmarks in private XML and XEP-0402 PEP bookmarks are one list (#compat)", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_bookmarks_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  // The XEP-0402 client was notified of each room the XEP-0048 client stored.
  assert.deepEqual(result.notified, ["board@muc.localhost", "tea@muc.localhost"]);
  // The XEP-0048 client reads all three rooms back, from private XML and from legacy PEP.
  assert.deepEqual(result.private, [
    { jid: "board@muc.localhost", nick: "Al", autojoin: false, password: "" },
    { jid: "orchard@muc.localhost", nick: "JC", autojoin: true, password: "" },
    { jid: "tea@muc.localhost", nick: "Alice", autojoin: true, password: "secret" },
  ]);
  assert.deepEqual(result.legacy_pep, [
    "board@muc.localhost",
    "orchard@muc.localhost",
    "tea@muc.localhost",
  ]);
});

Deno.test("slixmpp's XEP-0084 and XEP-0153 plugins: an avatar set on either side reaches the other (XEP-0398)", async () => {
  await requireSlixmpp();
  const result = await withClient(({ tlsPort, caFile }) => [
    PYTHON,
    ["tests/interop/slixmpp_avatar_client.py", String(tlsPort), caFile],
  ]);
  assert.equal(result.error, undefined, result.error);
  assert.equal(result.both, true);
  // SHA-1 of the script's 1x1 PNG and 2x3 GIF.
  const png = "c7a9c45fd419815a5ab1998503a9f03514c0e229";
  const gif = "fafe652f289b3c017e39c7bcce806f59dc2b4abd";
  assert.deepEqual(result.vcard_photo, { type: "image/png", sha1: png });
  assert.deepEqual(result.presence_hashes[0], { from: "alice@localhost/py", photo: png });
  assert.equal(result.pep_data_sha1, gif);
  assert.equal(result.pep_info.id, gif);
  assert.equal(result.pep_info.type, "image/gif");
  assert.equal(result.pep_info.width, "2");
  assert.equal(result.pep_info.height, "3");
});

/** slixmpp with its default SASL settings over "starttls" or "direct-tls". */
function slixmppDefaults(transport: "starttls" | "direct-tls") {
  return ({ port, tlsPort, caFile }: ClientTarget): [string, string[]] => [
    PYTHON,
    [
      "tests/interop/slixmpp_client.py",
      String(transport === "starttls" ? port : tlsPort),
      caFile,
      "defaults",
      transport,
    ],
  ];
}

for (const transport of ["starttls", "direct-tls"] as const) {
  Deno.test(`slixmpp with default settings logs in over ${transport} with no failed SASL attempt`, async () => {
    await requireSlixmpp();
    const result = await withClient(slixmppDefaults(transport));
    assert.equal(result.error, undefined, result.error);
    console.log(`slixmpp ${transport}: ${result.mechanisms.join(", ")} over ${result.tls}`);
    assert.deepEqual(result.failures, [], "the server sent no SASL failure");
    assert.deepEqual(result.states, ["bound", "bound"]);
    // slixmpp takes the strongest mechanism offered that it can complete on its own.
    assert.deepEqual(result.mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-256"]);
    assert.deepEqual(result.message, { from: "bob@localhost/py", body: "defaults work" });
  });
}

Deno.test("with -PLUS offered, slixmpp's tls-unique attempts fail recoverably and are not counted as wrong passwords", async () => {
  await requireSlixmpp();
  // One wrong password would make the next attempt wait: the two channel binding failures must not.
  const result = await withClient(
    slixmppDefaults("starttls"),
    "sasl_offer_channel_binding = true\nauth_throttle_max_failures = 1",
  );
  assert.equal(result.error, undefined, result.error);
  assert.deepEqual(result.states, ["bound", "bound"]);
  const conditions = result.failures.map((f: { condition: string }) => f.condition);
  assert.deepEqual(conditions, Array(4).fill("malformed-request"), JSON.stringify(result.failures));
  for (const failure of result.failures) {
    assert.match(failure.text, /tls-unique.*tls-server-end-point/);
  }
  assert.deepEqual(result.mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-256"]);
});

function xmppjsDefaults(scheme: "xmpp" | "xmpps") {
  return ({ port, tlsPort, caFile }: ClientTarget): [string, string[], Record<string, string>] => [
    Deno.execPath(),
    [
      "run",
      "-A",
      "tests/interop/xmppjs_client.ts",
      String(scheme === "xmpp" ? port : tlsPort),
      "defaults",
      scheme,
    ],
    { DENO_CERT: caFile },
  ];
}

for (const scheme of ["xmpp", "xmpps"] as const) {
  const transport = scheme === "xmpp" ? "STARTTLS" : "direct TLS";
  Deno.test(`xmpp.js with default settings logs in over ${transport} with no failed SASL attempt`, async () => {
    const result = await withClient(xmppjsDefaults(scheme));
    assert.equal(result.error, undefined, result.error);
    const logins = result.logins as {
      jid: string;
      mechanisms: string[];
      failures: string[];
      secure: boolean;
    }[];
    console.log(`xmpp.js ${transport}: ${logins.map((l) => l.mechanisms.join("+")).join(", ")}`);
    assert.match(logins[0].jid, BIND2_RESOURCE("alice", "js"));
    assert.match(logins[1].jid, BIND2_RESOURCE("bob", "js"));
    assert.equal(logins.length, 2);
    assert.deepEqual(logins.map((l) => l.failures), [[], []], "the server sent no SASL failure");
    assert.deepEqual(logins.map((l) => l.mechanisms), [["SCRAM-SHA-1"], ["SCRAM-SHA-1"]]);
    assert.deepEqual(logins.map((l) => l.secure), [true, true]);
  });
}

Deno.test("slixmpp's XEP-0045 plugin creates and configures a room, joins with subject and history, talks and is kicked", async () => {
  await requireSlixmpp();
  const result = await withClient(
    ({ tlsPort, caFile }) => [
      PYTHON,
      ["tests/interop/slixmpp_muc_client.py", String(tlsPort), caFile],
    ],
    "",
    '[[component]]\ndomain = "conference.localhost"\nmodules = ["disco", "muc"]\n',
  );
  assert.equal(result.error, undefined, result.error);
  // 170: the room is archived (muc_log_by_default).
  assert.deepEqual(result.created_codes, [110, 170, 201]);
  assert.deepEqual(result.joined_codes, [110, 170]);
  assert.equal(result.subject, "Testing slixmpp");
  // slixmpp counts its own presence among the occupants: the others' came first.
  assert.deepEqual(result.occupants, [
    "interop@conference.localhost/Alice",
    "interop@conference.localhost/Bob",
  ]);
  assert.deepEqual(result.history, ["first", "second"]);
  // The room's archive through slixmpp's XEP-0313 plugin, two a page: the subject change (no
  // body), the history (same ids as its stanza-ids), then bob's message.
  const archived = result.archive.flat();
  assert.deepEqual(result.archive.map((page: unknown[]) => page.length), [2, 2]);
  assert.deepEqual(archived.map((m: { body: string }) => m.body), [
    "",
    "first",
    "second",
    "hello from bob",
  ]);
  assert.deepEqual(archived.slice(1, 3).map((m: { id: string }) => m.id), result.history_ids);
  assert.equal(archived[3].from, "interop@conference.localhost/Bob");
  assert.deepEqual(result.alice_got, [
    { from: "interop@conference.localhost/Bob", body: "hello from bob" },
  ]);
  assert.deepEqual(result.bob_self.at(-1), {
    type: "unavailable",
    codes: [110, 307],
    role: "none",
  });
});

Deno.test("xmpp.js joins the room slixmpp's XEP-0045 plugin made, and they exchange a message", async () => {
  await requireSlixmpp();
  const dir = await Deno.makeTempDir({ prefix: "lilt-ca-" });
  const certs = await makeTestCa(dir, ["localhost"]);
  const t = await startTestServer({
    globalToml: `certificate = ${JSON.stringify(certs.certFile)}\nkey = ${
      JSON.stringify(certs.keyFile)
    }\n`,
    users: { alice: "alice-secret", bob: "bob-secret" },
    extraToml: '[[component]]\ndomain = "conference.localhost"\nmodules = ["disco", "muc"]\n',
  });
  const host = new Deno.Command(PYTHON, {
    args: ["tests/interop/slixmpp_muc_host.py", String(t.tlsPort), certs.caFile],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(host.stderr).text();
  const lines = host.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    // slixmpp prints {"ready": true} once the room exists with its subject and one message.
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    const first = JSON.parse(text.split("\n")[0] || "{}");
    assert.equal(first.ready, true, `slixmpp did not get the room ready: ${text}`);
    const js = await runProcess(
      Deno.execPath(),
      [
        "run",
        "-A",
        "tests/interop/xmppjs_muc_client.ts",
        String(t.port),
        "mixed@conference.localhost",
      ],
      { DENO_CERT: certs.caFile },
    );
    while (true) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    const py = JSON.parse(text.trim().split("\n").at(-1) ?? "{}");
    assert.equal(js.error, undefined, js.error);
    assert.equal(py.error, undefined, `${py.error}\n${await stderr}`);
    assert.deepEqual(py.created_codes, [110, 170, 201]);
    // xmpp.js saw slixmpp's occupant, its own presence (110, 170: archived), the history
    // (delayed) and the subject, then slixmpp's answer.
    assert.deepEqual(js.occupants, ["mixed@conference.localhost/Alice"]);
    assert.deepEqual(js.selfCodes.sort(), [110, 170]);
    assert.deepEqual(js.history, [
      { from: "mixed@conference.localhost/Alice", body: "before xmpp.js", delayed: true },
    ]);
    assert.equal(js.subject, "Mixed clients");
    assert.deepEqual(js.messages, [
      { from: "mixed@conference.localhost/Bob", body: "hello from xmpp.js" },
      { from: "mixed@conference.localhost/Alice", body: "hello from slixmpp" },
    ]);
    assert.equal(js.left, true);
    // slixmpp saw xmpp.js join, talk and leave.
    assert.deepEqual(py.joined, ["mixed@conference.localhost/Bob"]);
    assert.deepEqual(py.heard, [
      { from: "mixed@conference.localhost/Bob", body: "hello from xmpp.js" },
    ]);
    assert.deepEqual(py.left, ["mixed@conference.localhost/Bob"]);
  } finally {
    await lines.cancel().catch(() => {});
    try {
      host.kill();
    } catch {
      // already exited
    }
    await host.status;
    await stderr.catch(() => "");
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("slixmpp with stream management enables push, loses its connection, and a slixmpp app server gets the notification", async () => {
  await requireSlixmpp();
  const dir = await Deno.makeTempDir({ prefix: "lilt-ca-" });
  const certs = await makeTestCa(dir, ["localhost"]);
  const t = await startTestServer({
    globalToml: `certificate = ${JSON.stringify(certs.certFile)}\nkey = ${
      JSON.stringify(certs.keyFile)
    }\ncomponent_interfaces = ["127.0.0.1:0"]\n`,
    users: { alice: "alice-secret", bob: "bob-secret" },
    extraToml: '[[component]]\ndomain = "push.localhost"\nsecret = "s3cret"\n',
  });
  try {
    const result = await runProcess(PYTHON, [
      "tests/interop/slixmpp_push_client.py",
      String(t.tlsPort),
      certs.caFile,
      String(t.server.port("component")),
    ]);
    assert.equal(result.error, undefined, result.error);
    assert.equal(result.sm_enabled, true);
    assert.equal(result.enable_type, "result");
    assert.equal(result.publishes.length, 1, JSON.stringify(result.publishes));
    const [publish] = result.publishes;
    assert.equal(publish.from, "alice@localhost");
    assert.equal(publish.type, "set");
    assert.equal(publish.node, "slix-node");
    assert.deepEqual(publish.fields, {
      FORM_TYPE: "urn:xmpp:push:summary",
      "message-count": "1",
      "last-message-body": "New Message!",
    });
    assert.equal(publish.options.secret, "app-secret");
  } finally {
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
