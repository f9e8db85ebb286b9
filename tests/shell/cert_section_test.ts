// The `cert` admin shell section over a real admin socket: `cert list` shows what each host and
// component presents, `cert reload` puts renewed files in force for new TLS connections while
// a logged-in session stays, and a broken pair is refused with the old certificate kept.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { CommandResult } from "../../core/admin_commands.ts";
import { startAdminSocket } from "../../shell/admin_socket.ts";
import { AdminClient, formatResult } from "../../shell/client.ts";
import { certCommands, type CertificateRow } from "../../shell/sections/cert.ts";
import { RawClient, roundTrip } from "../helpers/raw_client.ts";
import { createTestCa } from "../helpers/test_ca.ts";
import { startTestServer } from "../helpers/test_server.ts";

/** The SHA-256 fingerprint of the certificate a new direct TLS connection is given. */
async function presentedFingerprint(port: number, servername = "localhost"): Promise<string> {
  const client = await RawClient.connect(port, { tls: true, servername });
  try {
    return (client.socket as TLSSocket).getPeerCertificate().fingerprint256;
  } finally {
    client.close();
  }
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

Deno.test("cert list and cert reload: renewed files reach new connections, sessions stay", async () => {
  const t = await startTestServer({
    users: { alice: "pw" },
    modules: ["ping"],
    extraToml: '[[component]]\ndomain = "muc.localhost"\nmodules = ["ping"]\n',
  });
  t.server.commands.add(certCommands());
  const socketPath = `${t.dataDir}/run/lilt.sock`;
  const admin = await startAdminSocket(t.server, socketPath);
  const shell = await AdminClient.connect(socketPath);
  const call = async (cmd: string): Promise<CommandResult> => {
    const reply = await shell.request(cmd, []);
    if (!reply.ok) throw new Error(reply.error);
    return reply.result;
  };
  const { client: alice } = await RawClient.login(t.port, "alice", "pw");
  try {
    const before = await call("cert list");
    assert.deepEqual(before.table!.columns, [
      "domain",
      "file",
      "names",
      "issuer",
      "not after",
      "days",
      "origin",
      "covers",
    ]);
    const [host, component] = before.data as CertificateRow[];
    assert.equal(host.domain, "localhost");
    assert.equal(host.file, `${t.dataDir}/certs/localhost.crt`);
    assert.equal(host.origin, "generated");
    assert.deepEqual(host.names, ["localhost", "*.localhost"]);
    assert.equal(host.covers, true);
    assert.ok(host.daysLeft >= 364, `a year left, found ${host.daysLeft}`);
    assert.deepEqual(
      [component.domain, component.kind, component.via, component.covers],
      ["muc.localhost", "component", "localhost", true],
      "a component without its own certificate gets its host's wildcard",
    );
    assert.match(formatResult(before), /muc\.localhost +\(localhost's\) +localhost \*\.localhost/);
    const generated = await presentedFingerprint(t.tlsPort);
    assert.equal(generated, host.fingerprint);

    // Nothing changed on disk: a reload says so.
    const same = await call("cert reload");
    assert.match(same.message!, /^localhost: unchanged, /m);
    assert.match(same.message!, /No certificate changed$/);

    // The renewed pair lands where `lilt cert import` writes it.
    const ca = await createTestCa();
    const renewed = await ca.issue({ names: ["localhost"], intermediate: true });
    const own = await ca.issue({ names: ["muc.localhost"] });
    await Deno.writeTextFile(`${t.dataDir}/certs/localhost.crt`, renewed.chainPem);
    await Deno.writeTextFile(`${t.dataDir}/certs/localhost.key`, renewed.keyPem);
    await Deno.writeTextFile(`${t.dataDir}/certs/muc.localhost.crt`, own.chainPem);
    await Deno.writeTextFile(`${t.dataDir}/certs/muc.localhost.key`, own.keyPem);
    assert.equal(await presentedFingerprint(t.tlsPort), generated, "nothing before the reload");

    const reload = await call("cert reload");
    assert.match(
      reload.message!,
      new RegExp(
        `^localhost: new certificate ${t.dataDir}/certs/localhost\\.crt \\(localhost; ` +
          `valid until \\d{4}-\\d\\d-\\d\\d\\), was valid until `,
        "m",
      ),
    );
    assert.match(reload.message!, /^muc\.localhost: now .*muc\.localhost\.crt/m);
    assert.match(reload.message!, /2 certificate\(s\) changed: new connections get them/);
    assert.equal(await presentedFingerprint(t.tlsPort), fingerprintOf(renewed.certPem));
    assert.equal(
      await presentedFingerprint(t.tlsPort, "muc.localhost"),
      fingerprintOf(own.certPem),
    );
    await roundTrip(alice); // the session from before the reload still answers

    const after = (await call("cert list")).data as CertificateRow[];
    assert.equal(after[0].origin, "ca-issued");
    assert.equal(after[0].issuer, "CN=Lilt Test CA Intermediate");
    assert.equal(after[1].via, null);
    assert.equal(after[1].file, `${t.dataDir}/certs/muc.localhost.crt`);

    // A key that does not match is refused; the certificates in force stay.
    await Deno.writeTextFile(`${t.dataDir}/certs/localhost.key`, own.keyPem);
    await assert.rejects(
      call("cert reload"),
      /^Error: Certificates not reloaded, the previous ones stay in force: The certificate stored for localhost .* does not match .*: run .lilt cert import DIR. again/,
    );
    assert.equal(await presentedFingerprint(t.tlsPort), fingerprintOf(renewed.certPem));
    await roundTrip(alice);
  } finally {
    alice.close();
    shell.close();
    await admin.close();
    await t.stop();
  }
});
