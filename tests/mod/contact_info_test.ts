// XEP-0157 on the wire: configured contact addresses (or, by default, the admins) appear as a
// serverinfo form in the server's disco#info, and a malformed option stops the server from
// starting with a message naming it.

import assert from "node:assert/strict";
import { serialize } from "../../core/xml/serializer.ts";
import { parseContactInfo } from "../../mod/contact_info.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { reloadConfiguration } from "../../shell/reload.ts";
import { startTestServer, testConfigText } from "../helpers/test_server.ts";

const DISCO_INFO =
  "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";

/** The serialized serverinfo form in the server's disco#info, if any. */
async function serverInfoForm(port: number): Promise<string | undefined> {
  const { client } = await RawClient.login(port, "alice", "pw");
  client.send(DISCO_INFO);
  const info = await client.next((el) => el.attrs.id === "d1");
  client.close();
  const form = info.getChild("query")!.getChild("x", "jabber:x:data");
  return form ? serialize(form) : undefined;
}

Deno.test("configured contact addresses are published as a serverinfo form", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "contact_info"],
    hostToml: `contact_info = { support = ["https://example.com/help"], ` +
      `abuse = ["mailto:abuse@example.com", "xmpp:abuse@localhost"] }`,
  });
  try {
    assert.equal(
      await serverInfoForm(t.port),
      "<x xmlns='jabber:x:data' type='result'>" +
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value></field>" +
        "<field var='abuse-addresses' type='list-multi'><value>mailto:abuse@example.com</value>" +
        "<value>xmpp:abuse@localhost</value></field>" +
        "<field var='support-addresses' type='list-multi'><value>https://example.com/help</value>" +
        "</field></x>",
    );
  } finally {
    await t.stop();
  }
});

Deno.test("without contact_info the admins are the contacts, and without admins no form", async () => {
  const withAdmins = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "contact_info"],
    hostToml: `admins = ["boss@localhost"]`,
  });
  try {
    assert.equal(
      await serverInfoForm(withAdmins.port),
      "<x xmlns='jabber:x:data' type='result'>" +
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value></field>" +
        "<field var='admin-addresses' type='list-multi'><value>xmpp:boss@localhost</value></field></x>",
    );
  } finally {
    await withAdmins.stop();
  }
  const without = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "contact_info"],
  });
  try {
    assert.equal(await serverInfoForm(without.port), undefined);
  } finally {
    await without.stop();
  }
});

Deno.test("contact_info values are checked", () => {
  assert.deepEqual(parseContactInfo({ admin: ["xmpp:a@example.com"], sales: [] }), {
    admin: ["xmpp:a@example.com"],
  });
  assert.equal(
    parseContactInfo(["mailto:a@example.com"]),
    'expected a table of contact kinds, found ["mailto:a@example.com"]',
  );
  assert.equal(
    parseContactInfo({ abuse: "mailto:a@example.com" }),
    "expected a list of URIs for 'abuse', found \"mailto:a@example.com\"",
  );
  assert.equal(
    parseContactInfo({ helpdesk: ["mailto:a@example.com"] }),
    "expected contact kinds among abuse, admin, feedback, sales, security, status, support, " +
      "found 'helpdesk'",
  );
  assert.equal(
    parseContactInfo({ abuse: ["abuse@example.com"] }),
    `expected URIs such as "mailto:abuse@example.com" for 'abuse', found 'abuse@example.com'`,
  );
});

Deno.test("a malformed contact_info stops the start with a message naming the option", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lilt-test-" });
  try {
    await assert.rejects(
      startTestServer({
        dataDir,
        modules: ["disco", "contact_info"],
        hostToml: `contact_info = { abuse = ["not a uri"] }`,
      }),
      /test\.toml:\d+: Option 'contact_info' of module 'contact_info' expected URIs .* found 'not a uri'/,
    );
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a reload publishes changed contact addresses and admins", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["disco", "contact_info"],
    hostToml: `admins = ["boss@localhost"]`,
  });
  try {
    assert.match((await serverInfoForm(t.port))!, /xmpp:boss@localhost/);
    const reload = async (hostToml: string) => {
      const text = testConfigText(t.dataDir, { modules: ["disco", "contact_info"], hostToml });
      await Deno.writeTextFile(t.config.file, text);
      const result = await reloadConfiguration(t.server);
      assert.ok(result.ok, result.error);
    };
    await reload(`admins = ["chief@localhost"]`);
    const admins = await serverInfoForm(t.port);
    assert.match(admins!, /xmpp:chief@localhost/);
    assert.doesNotMatch(admins!, /boss/);
    await reload(`contact_info = { support = ["https://example.com/help"] }`);
    assert.match(
      (await serverInfoForm(t.port))!,
      /support-addresses.*https:\/\/example\.com\/help/,
    );
  } finally {
    await t.stop();
  }
});
