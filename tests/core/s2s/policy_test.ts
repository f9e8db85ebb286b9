// Federation policy from configuration: who a host federates with, and when a valid
// certificate is required instead of dialback.

import assert from "node:assert/strict";
import { parseConfigText } from "../../../core/config.ts";
import { S2SPolicy, s2sTrustOptions } from "../../../core/s2s/policy.ts";

function policy(toml: string): S2SPolicy {
  const { config, problems } = parseConfigText(toml, "test.toml");
  if (!config) throw new Error(JSON.stringify(problems));
  return new S2SPolicy(() => config);
}

const HOSTS = `
[[host]]
domain = "a.test"
[[host]]
domain = "quiet.test"
s2s = false
[[host]]
domain = "lax.test"
s2s_secure_auth = false
s2s_secure_domains = ["bank.test"]
`;

Deno.test("federation is off without an s2s listener, and per host with s2s = false", () => {
  assert.match(policy(HOSTS).refusal("a.test", "b.test")!, /no s2s_interfaces/);
  const on = policy(`s2s_interfaces = ["127.0.0.1:0"]\n${HOSTS}`);
  assert.equal(on.refusal("a.test", "b.test"), undefined);
  assert.match(on.refusal("quiet.test", "b.test")!, /Federation is off for 'quiet.test'/);
});

Deno.test("deny and allow lists refuse with the option's name", () => {
  const p = policy(`s2s_interfaces = ["127.0.0.1:0"]
s2s_deny_domains = ["evil.test"]
[[host]]
domain = "a.test"
[[host]]
domain = "picky.test"
s2s_allow_domains = ["friend.test"]
`);
  assert.match(p.refusal("a.test", "evil.test")!, /s2s_deny_domains/);
  assert.equal(p.refusal("a.test", "friend.test"), undefined);
  assert.match(p.refusal("picky.test", "other.test")!, /s2s_allow_domains/);
  assert.match(p.refusal("picky.test", "evil.test")!, /s2s_deny_domains/);
  assert.equal(p.refusal("picky.test", "friend.test"), undefined);
});

Deno.test("secure_auth wants certificates except for insecure domains; secure domains always do", () => {
  const p = policy(`s2s_interfaces = ["127.0.0.1:0"]
s2s_insecure_domains = ["old.test"]
${HOSTS}`);
  assert.equal(p.authRequirement("a.test", "b.test"), "certificate");
  assert.equal(p.authRequirement("a.test", "old.test"), "certificate-or-dialback");
  assert.equal(p.authRequirement("lax.test", "b.test"), "certificate-or-dialback");
  assert.equal(p.authRequirement("lax.test", "bank.test"), "certificate");
  assert.equal(p.requireEncryption("a.test"), true);
});

Deno.test("domain lists refuse JIDs that are not bare domains, with file and line", () => {
  const { config, problems } = parseConfigText(
    `s2s_deny_domains = ["user@evil.test"]\n[[host]]\ndomain = "a.test"\n`,
    "test.toml",
  );
  assert.equal(config, undefined);
  assert.match(problems[0].message, /invalid domain 'user@evil.test'/);
  assert.equal(problems[0].line, 1);
});

Deno.test("s2s_dialback = false requires a certificate from every remote domain, and says so", () => {
  const p = policy(`s2s_interfaces = ["127.0.0.1:0"]
s2s_insecure_domains = ["old.test"]
[[host]]
domain = "a.test"
[[host]]
domain = "closed.test"
s2s_dialback = false
`);
  assert.equal(p.dialbackEnabled("a.test"), true);
  assert.equal(p.certificateRequiredBy("a.test", "old.test"), undefined);
  assert.equal(p.certificateRequiredBy("a.test", "b.test"), "s2s_secure_auth");
  assert.equal(p.dialbackEnabled("closed.test"), false);
  assert.equal(p.certificateRequiredBy("closed.test", "old.test"), "s2s_dialback = false");
  assert.equal(p.authRequirement("closed.test", "old.test"), "certificate");
});

Deno.test("s2s_ca_files_only trusts the CA files alone, and is refused without any", () => {
  const host = `[[host]]\ndomain = "a.test"\n`;
  const open = parseConfigText(`s2s_ca_files = ["/etc/lilt/peers.pem"]\n${host}`, "test.toml")
    .config!;
  assert.deepEqual(s2sTrustOptions(open), {
    caFiles: ["/etc/lilt/peers.pem"],
    system: true,
    bundled: true,
  });
  const closed = parseConfigText(
    `s2s_ca_files = ["/etc/lilt/peers.pem"]\ns2s_ca_files_only = true\n${host}`,
    "test.toml",
  ).config!;
  assert.deepEqual(s2sTrustOptions(closed), {
    caFiles: ["/etc/lilt/peers.pem"],
    system: false,
    bundled: false,
  });
  const empty = parseConfigText(`s2s_ca_files_only = true\n${host}`, "test.toml").config!;
  assert.throws(() => s2sTrustOptions(empty), /s2s_ca_files_only is on but s2s_ca_files is empty/);
});
