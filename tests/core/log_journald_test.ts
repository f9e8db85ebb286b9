// Interop test of the journald, syslog and console sinks with Debian's real systemd-journald:
// it runs in a private mount namespace (its own /run, and /var/log/journal hidden) so it
// touches nothing of this machine's, and journalctl then shows what journald made of Lilt's
// records: the priority, the identifier and the transport of each.

import assert from "node:assert/strict";

const JOURNALD = "/lib/systemd/systemd-journald";
const LOG_MODULE = new URL("../../core/log.ts", import.meta.url).href;

/** Why the test cannot run here, or undefined. */
async function unavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "systemd-journald is Linux only";
  if (Deno.uid() !== 0) return "needs root for a private mount namespace";
  for (
    const tool of [JOURNALD, "/usr/bin/journalctl", "/usr/bin/systemd-cat", "/usr/bin/unshare"]
  ) {
    try {
      await Deno.stat(tool);
    } catch {
      return `${tool} is missing (scripts/install-test-deps installs systemd)`;
    }
  }
  return undefined;
}

// Logs through each sink alone, so every journal entry comes from one of them.
const CHILD = `
const { dev, ino } = Deno.statSync("/proc/self/fd/2");
// systemd-cat connects standard error to journald's stream socket, as a unit's would be; a unit
// also sets JOURNAL_STREAM to it.
Deno.env.set("JOURNAL_STREAM", dev + ":" + ino);
const { configureLogging, getLogger } = await import(${JSON.stringify(LOG_MODULE)});
const base = { level: "info", console: false, file: "", categories: {} };
await configureLogging({ ...base, journald: true });
getLogger("c2s").warning("native {n}", { n: 1 });
getLogger("storage").error("native failure: {error}", { error: new Error("disk full") });
await configureLogging({ ...base, syslog: true, syslogSocket: "/run/systemd/journal/dev-log" });
getLogger("s2s").error("through syslog");
await configureLogging({ ...base, console: true });
getLogger("http").warning("through stderr");
getLogger("http").debug("below the level");
`;

const SCRIPT = `
set -eu
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal
"$JOURNALD" 2>/dev/null &
journald=$!
trap 'kill $journald 2>/dev/null || true' EXIT
for i in $(seq 1 200); do
  [ -S /run/systemd/journal/io.systemd.journal ] && break
  sleep 0.05
done
systemd-cat -t lilt-stderr "$DENO" eval "$CHILD"
journalctl --sync
journalctl -D /run/log/journal -o json --no-pager
`;

interface Entry {
  [field: string]: string | undefined;
}

Deno.test("systemd-journald stores each sink's records with their priority", async (t) => {
  const reason = await unavailable();
  if (reason) {
    console.log(`skipped: ${reason}`);
    return;
  }
  const output = await new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", "sh", "-c", SCRIPT],
    env: { JOURNALD, DENO: Deno.execPath(), CHILD },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  const entries: Entry[] = new TextDecoder().decode(output.stdout).split("\n")
    .filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
  const find = (message: string | RegExp) => {
    const found = entries.filter((e) =>
      typeof message === "string" ? e.MESSAGE === message : message.test(e.MESSAGE ?? "")
    );
    assert.equal(found.length, 1, `one entry for ${message}, found ${found.length}`);
    return found[0];
  };

  await t.step("native protocol", () => {
    const native = find("lilt.c2s: native 1");
    assert.equal(native.PRIORITY, "4");
    assert.equal(native.SYSLOG_IDENTIFIER, "lilt");
    assert.equal(native.LILT_CATEGORY, "lilt.c2s");
    assert.equal(native._TRANSPORT, "journal");
    const failure = find(/^lilt\.storage: native failure: Error: disk full\n {4}at /);
    assert.equal(failure.PRIORITY, "3");
  });
  await t.step("syslog socket", () => {
    const syslog = find("lilt.s2s: through syslog");
    assert.equal(syslog.PRIORITY, "3");
    assert.equal(syslog.SYSLOG_FACILITY, "3");
    assert.equal(syslog.SYSLOG_IDENTIFIER, "lilt");
    assert.equal(syslog._TRANSPORT, "syslog");
  });
  await t.step("standard error with sd-daemon prefixes", () => {
    const console = find("lilt.http: through stderr");
    assert.equal(console.PRIORITY, "4");
    assert.equal(console._TRANSPORT, "stdout");
    assert.equal(entries.filter((e) => /below the level/.test(e.MESSAGE ?? "")).length, 0);
  });
});
