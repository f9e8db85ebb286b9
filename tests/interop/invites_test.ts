// Issue 18, acceptance 4: an invitation URI printed by a one-shot `lilt shell invite create`
// against a running server registers an account with a real client (Debian's python3-slixmpp,
// xep_0077 plus XEP-0445's <preauth/>), which then has the inviter in its roster with a
// subscription both ways; the URI cannot be used a second time.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { makeTestCa } from "../helpers/test_ca.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = "/usr/bin/python3";
const NS_ROSTER = "jabber:iq:roster";

async function output(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The JSON line the slixmpp script printed for one registration attempt. */
async function slixmppRegister(tlsPort: number, caFile: string, uri: string, user: string) {
  const run = await output(PYTHON, [
    "tests/interop/slixmpp_invite_client.py",
    String(tlsPort),
    caFile,
    uri,
    user,
    `${user}-secret`,
  ]);
  if (Deno.env.get("SLIXMPP_LOG")) console.error(run.stderr);
  const last = run.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(`slixmpp printed no JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`);
  }
}

Deno.test("a URI from `lilt shell invite create` registers a slixmpp account that has the inviter in its roster", async () => {
  const probe = await new Deno.Command(PYTHON, { args: ["-c", "import slixmpp"], stderr: "null" })
    .output().catch(() => undefined);
  if (!probe?.success) {
    throw new Error(
      "Debian's python3-slixmpp is missing: run scripts/install-test-deps as root " +
        "(or: sudo apt-get install python3-slixmpp)",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "lilt-invite-" });
  const certs = await makeTestCa(dir, ["localhost"]);
  const t = await startTestServer({
    globalToml: [
      `certificate = ${JSON.stringify(certs.certFile)}`,
      `key = ${JSON.stringify(certs.keyFile)}`,
      "allow_registration = true",
      "registration_requires_invite = true",
    ].join("\n"),
    users: { alice: "alice-secret" },
  });
  const admin = await startAdminSocket(t.server, `${t.dataDir}/lilt.sock`);
  try {
    // The operator's command, as typed: a config naming the server's data_dir finds its socket.
    const configFile = `${dir}/shell.toml`;
    await Deno.writeTextFile(configFile, testConfigText(t.dataDir, { modules: [] }));
    const created = await output(Deno.execPath(), [
      "run",
      "-A",
      `${ROOT}main.ts`,
      "shell",
      "-c",
      configFile,
      "invite",
      "create",
      "--user",
      "alice@localhost",
      "--expires",
      "1d",
    ]);
    assert.equal(created.code, 0, created.stderr);
    const uri = created.stdout.trim();
    assert.match(uri, /^xmpp:alice@localhost\?roster;preauth=[A-Za-z0-9_-]{24};ibr=y$/);
    console.log(`invite URI from lilt shell: ${uri}`);

    const first = await slixmppRegister(t.tlsPort, certs.caFile, uri, "juliet");
    assert.equal(first.error, undefined, first.error);
    console.log(JSON.stringify(first));
    assert.deepEqual(first.steps, ["preauth accepted", "registered"]);
    assert.equal(first.started, true);
    assert.equal(first.jid, "juliet@localhost");
    assert.equal(first.inviter, "alice@localhost");
    assert.equal(first.subscription, "both");

    // The inviter sees the new contact too.
    const { client: alice } = await RawClient.login(t.port, "alice", "alice-secret");
    alice.send(`<iq type='get' id='r1'><query xmlns='${NS_ROSTER}'/></iq>`);
    const roster = await alice.next((el) => el.name === "iq" && el.attrs.id === "r1");
    const items = roster.getChild("query", NS_ROSTER)!.getChildren("item");
    assert.deepEqual(items.map((i) => [i.attrs.jid, i.attrs.subscription]), [
      ["juliet@localhost", "both"],
    ]);
    alice.close();

    // Single use: the same URI does not register a second account.
    const second = await slixmppRegister(t.tlsPort, certs.caFile, uri, "mallory");
    assert.deepEqual(second.steps, ["refused: item-not-found"]);
    assert.equal(t.server.accounts.exists("localhost", "mallory"), false);
  } finally {
    await admin.close();
    await t.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
