// Runs the same workloads against Lilt and Debian's Prosody on loopback, one server at a time,
// and prints absolute figures with Lilt/Prosody ratios (see scripts/bench/README.md).

import net from "node:net";
import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const benchDir = join(root, "scripts/bench");
const domain = "localhost";
const password = "benchpass";
const prefix = "bench";
const iterations = 4096;

/** Workload sizes; --quick shrinks them. */
interface Sizes {
  logins: number;
  pairs: number;
  idle: number;
  seconds: number;
  parserMb: number;
}

const fullSizes: Sizes = { logins: 2000, pairs: 200, idle: 5000, seconds: 8, parserMb: 10 };
const quickSizes: Sizes = { logins: 300, pairs: 50, idle: 1000, seconds: 4, parserMb: 2 };

function log(text: string): void {
  console.error(`[bench] ${text}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free loopback TCP port (closed again before it is used). */
function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = net.createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => ok(port));
    });
  });
}

/** Resolves once something accepts connections on the port, or throws after `ms`. */
async function waitForPort(port: number, ms: number, child: Deno.ChildProcess): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  child.status.then(() => exited = true);
  while (Date.now() < deadline) {
    if (exited) throw new Error(`Server exited before listening on port ${port}`);
    const up = await new Promise<boolean>((ok) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        ok(true);
      });
      s.once("error", () => ok(false));
    });
    if (up) return;
    await sleep(200);
  }
  throw new Error(`Nothing listened on port ${port} within ${ms} ms`);
}

async function run(cmd: string[], options: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd ?? root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `Command '${cmd.join(" ")}' failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return stdout;
}

/** Starts a server pinned to CPU0 with its output in `logFile`; the PID is the server's own. */
async function startServer(cmd: string[], logFile: string): Promise<Deno.ChildProcess> {
  const file = await Deno.open(logFile, { write: true, create: true, truncate: true });
  const child = new Deno.Command("taskset", {
    args: ["-c", "0", ...cmd],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  child.stdout.pipeTo(file.writable, { preventClose: true }).catch(() => {});
  child.stderr.pipeTo((await Deno.open(logFile, { append: true })).writable).catch(() => {});
  return child;
}

async function stopServer(child: Deno.ChildProcess, name: string): Promise<void> {
  try {
    Deno.kill(child.pid, "SIGTERM");
  } catch { /* already gone */ }
  const done = await Promise.race([child.status.then(() => true), sleep(10000).then(() => false)]);
  if (!done) {
    log(`${name} did not stop within 10 s; killing PID ${child.pid}`);
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
    await child.status;
  }
}

/** Runs load_client.ts pinned to CPU1 and returns its JSON result. */
async function runLoad(port: number, pid: number, sizes: Sizes): Promise<Figures> {
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      "1",
      Deno.execPath(),
      "run",
      "-A",
      join(benchDir, "load_client.ts"),
      `--port=${port}`,
      `--pid=${pid}`,
      `--domain=${domain}`,
      `--prefix=${prefix}`,
      `--password=${password}`,
      `--logins=${sizes.logins}`,
      `--pairs=${sizes.pairs}`,
      `--idle=${sizes.idle}`,
      `--seconds=${sizes.seconds}`,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    log("load client ran over 240 s; killing it");
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 240_000);
  const out = await child.output();
  clearTimeout(timer);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  const last = lines[lines.length - 1];
  if (!out.success || !last?.startsWith("{")) {
    throw new Error(`Load client failed (${out.code}): ${lines.slice(-3).join(" / ")}`);
  }
  return JSON.parse(last);
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Prosody's datamanager file-name escaping: every non-alphanumeric byte becomes %xx. */
function prosodyEscape(name: string): string {
  return name.replace(/[^A-Za-z0-9]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** SCRAM-SHA-1 StoredKey/ServerKey (hex) as Prosody 0.12's mod_auth_internal_hashed keeps them. */
async function prosodyCredentials(salt: string): Promise<{ stored: string; server: string }> {
  const enc = new TextEncoder();
  const base = await crypto.subtle.importKey("raw", enc.encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const salted = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-1", salt: enc.encode(salt), iterations },
    base,
    160,
  );
  const key = await crypto.subtle.importKey("raw", salted, { name: "HMAC", hash: "SHA-1" }, false, [
    "sign",
  ]);
  const clientKey = await crypto.subtle.sign("HMAC", key, enc.encode("Client Key"));
  const serverKey = await crypto.subtle.sign("HMAC", key, enc.encode("Server Key"));
  const stored = await crypto.subtle.digest("SHA-1", clientKey);
  return { stored: toHex(new Uint8Array(stored)), server: toHex(new Uint8Array(serverKey)) };
}

/** Writes `count` accounts straight into Prosody's internal storage (prosodyctl is too slow). */
async function writeProsodyAccounts(dataDir: string, count: number): Promise<void> {
  const dir = join(dataDir, prosodyEscape(domain), "accounts");
  await Deno.mkdir(dir, { recursive: true });
  const batch = 64;
  for (let i = 0; i < count; i += batch) {
    const jobs = [];
    for (let j = i; j < Math.min(count, i + batch); j++) {
      jobs.push((async () => {
        const salt = crypto.randomUUID();
        const { stored, server } = await prosodyCredentials(salt);
        const lua = `return {\n\t["iteration_count"] = ${iterations};\n\t["salt"] = "${salt}";\n` +
          `\t["server_key"] = "${server}";\n\t["stored_key"] = "${stored}";\n};\n`;
        await Deno.writeTextFile(join(dir, `${prosodyEscape(prefix + j)}.dat`), lua);
      })());
    }
    await Promise.all(jobs);
  }
}

function luaString(text: string): string {
  return JSON.stringify(text);
}

/** Runs every workload against Prosody; returns the load client's figures. */
async function benchProsody(
  work: string,
  cert: string,
  key: string,
  sizes: Sizes,
  accounts: number,
) {
  const dir = join(work, "prosody");
  const dataDir = join(dir, "data");
  await Deno.mkdir(dataDir, { recursive: true });
  const port = await freePort();
  const t0 = performance.now();
  await writeProsodyAccounts(dataDir, accounts);
  log(`prosody: ${accounts} accounts written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const config = join(dir, "prosody.cfg.lua");
  await Deno.writeTextFile(
    config,
    `-- generated by scripts/bench/compare.ts
run_as_root = true
daemonize = false
pidfile = ${luaString(join(dir, "prosody.pid"))}
data_path = ${luaString(dataDir)}
certificates = ${luaString(dirname(cert))}
network_backend = "epoll"
interfaces = { "127.0.0.1" }
c2s_ports = { ${port} }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
log = { { levels = { min = "warn" }, to = "file", filename = ${
      luaString(join(dir, "prosody.log"))
    } } }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "offline", "carbons",
  "blocklist", "private", "lastactivity", "time", "version", "uptime" }
modules_disabled = { "s2s" }
ssl = { certificate = ${luaString(cert)}, key = ${luaString(key)} }
VirtualHost "${domain}"
  ssl = { certificate = ${luaString(cert)}, key = ${luaString(key)} }
`,
  );
  const child = await startServer(["prosody", "-F", "--config", config], join(dir, "stdout.log"));
  try {
    await waitForPort(port, 30000, child);
    log(`prosody: PID ${child.pid} on port ${port}`);
    return await runLoad(port, child.pid, sizes);
  } finally {
    await stopServer(child, "prosody");
  }
}

/** Runs every workload against Lilt; returns the load client's figures. */
async function benchLilt(work: string, cert: string, key: string, sizes: Sizes, accounts: number) {
  const dir = join(work, "lilt");
  await Deno.mkdir(join(dir, "data"), { recursive: true });
  const port = await freePort();
  const config = join(dir, "lilt.toml");
  await Deno.writeTextFile(
    config,
    `# generated by scripts/bench/compare.ts
data_dir = ${JSON.stringify(join(dir, "data"))}
modules = ["disco", "ping", "roster", "presence", "offline", "carbons", "blocklist", "private",
  "last", "time", "version"]
c2s_interfaces = ["127.0.0.1:${port}"]
c2s_direct_tls_interfaces = []
c2s_require_encryption = true
scram_iterations = ${iterations}
certificate = ${JSON.stringify(cert)}
key = ${JSON.stringify(key)}
[log]
level = "warning"
console = true
[[host]]
domain = "${domain}"
`,
  );
  const child = await startServer(
    [join(root, "scripts/lilt"), "start", "-c", config],
    join(dir, "stdout.log"),
  );
  try {
    await waitForPort(port, 60000, child);
    log(`lilt: PID ${child.pid} on port ${port}`);
    const importFile = join(dir, "accounts.txt");
    const lines = [];
    for (let i = 0; i < accounts; i++) lines.push(`${prefix}${i}@${domain} ${password}`);
    await Deno.writeTextFile(importFile, lines.join("\n") + "\n");
    const t0 = performance.now();
    const out = await run([
      join(root, "scripts/lilt"),
      "shell",
      "-c",
      config,
      "user",
      "import",
      importFile,
    ]);
    log(`lilt: ${out.trim()} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return await runLoad(port, child.pid, sizes);
  } finally {
    await stopServer(child, "lilt");
  }
}

/** Runs scripts/bench/xml_parser.ts and returns its JSON line. */
async function benchParser(sizes: Sizes): Promise<Figures> {
  const out = await run([
    "taskset",
    "-c",
    "0",
    Deno.execPath(),
    "run",
    "-A",
    join(benchDir, "xml_parser.ts"),
    `--mb=${sizes.parserMb}`,
  ]);
  const last = out.trim().split("\n").pop()!;
  return JSON.parse(last);
}

/** Parsed JSON figures: workload -> metric -> value for a server, or the parser's flat record. */
type Figures = Record<string, unknown>;

/** The value at `path` inside nested JSON objects, or undefined. */
function field(value: unknown, ...path: string[]): unknown {
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function fmt(n: unknown, digits = 1): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return "–";
  return n.toFixed(digits);
}

function ratio(a: unknown, b: unknown): number {
  return typeof a === "number" && typeof b === "number" && b !== 0 ? a / b : NaN;
}

/** One table row: metric, unit, Lilt, Prosody, ratio, and which way is better. */
type Row = [string, unknown, unknown, number, string];

function rows(
  lilt: Figures,
  prosody: Figures,
  parser: Figures,
) {
  const pick = (r: Figures, w: string, f: string) => field(r, w, f);
  const row = (label: string, w: string, f: string, better: string): Row => {
    const a = pick(lilt, w, f);
    const b = pick(prosody, w, f);
    return [label, a, b, ratio(a, b), better];
  };
  const table: Row[] = [
    row("login: sessions/s", "login", "sessions_per_s", "higher"),
    row("login: time to bound p50 (ms)", "login", "bound_p50_ms", "lower"),
    row("login: time to bound p99 (ms)", "login", "bound_p99_ms", "lower"),
    row("login: server CPU per login (ms)", "login", "cpu_ms_per_login", "lower"),
    row("login: load client busy (% of CPU1)", "login", "client_busy_pct", "–"),
    row("messages: delivered msgs/s at saturation", "messages", "saturation_msgs_per_s", "higher"),
    row(
      "messages: server CPU per msg, saturated (µs)",
      "messages",
      "saturation_cpu_us_per_msg",
      "lower",
    ),
    row("messages: load client's own max (msgs/s)", "messages", "client_max_msgs_per_s", "–"),
    row("messages: open loop, offered (msgs/s)", "messages", "open_offered_msgs_per_s", "–"),
    row("messages: open loop, achieved (msgs/s)", "messages", "open_achieved_msgs_per_s", "–"),
    row("messages: server busy in open loop (% of CPU0)", "messages", "open_server_busy_pct", "–"),
    row("messages: open-loop latency p50 (ms)", "messages", "latency_p50_ms", "lower"),
    row("messages: open-loop latency p99 (ms)", "messages", "latency_p99_ms", "lower"),
    row("messages: server CPU per msg, open loop (µs)", "messages", "open_cpu_us_per_msg", "lower"),
    row("memory: RSS per idle session (KiB)", "memory", "kib_per_session", "lower"),
    row("memory: RSS with all idle sessions (KiB)", "memory", "rss_after_kib", "lower"),
  ];
  table.push([
    "parser: Lilt MB/s vs saxes MB/s",
    parser.oursMBps,
    parser.saxesMBps,
    ratio(parser.oursMBps, parser.saxesMBps),
    "higher",
  ]);
  return table;
}

function printTable(table: Row[]): void {
  const lines = [
    "| workload | Lilt | Prosody | Lilt/Prosody | better |",
    "|---|---:|---:|---:|---|",
    ...table.map(([label, a, b, r, better]) =>
      `| ${label} | ${fmt(a)} | ${fmt(b)} | ${fmt(r, 2)} | ${better} |`
    ),
  ];
  console.log(lines.join("\n"));
}

async function ensureTools(): Promise<void> {
  for (const tool of ["taskset", "prosody", "openssl"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    })
      .output();
    if (!found.success) throw new Error(`Expected '${tool}' on PATH (see scripts/bench/run)`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", default: "lilt,prosody,parser" },
      keep: { type: "boolean", default: false },
    },
  });
  const sizes = values.quick ? quickSizes : fullSizes;
  const only = new Set(values.only!.split(","));
  await ensureTools();
  const work = await Deno.makeTempDir({ prefix: "lilt-bench-" });
  const started = new Date();
  log(`work dir ${work}; sizes ${JSON.stringify(sizes)}`);
  const cert = join(work, "cert.pem");
  const key = join(work, "key.pem");
  await run([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${domain}`,
    "-addext",
    `subjectAltName=DNS:${domain}`,
  ]);
  const accounts = Math.max(sizes.logins, sizes.pairs * 2, sizes.idle);
  const errors: string[] = [];
  let lilt: Figures = {};
  let prosody: Figures = {};
  let parser: Figures = {};
  try {
    if (only.has("lilt")) {
      try {
        lilt = await benchLilt(work, cert, key, sizes, accounts);
      } catch (error) {
        errors.push(`lilt: ${(error as Error).message}`);
        log(errors.at(-1)!);
      }
    }
    if (only.has("prosody")) {
      try {
        prosody = await benchProsody(work, cert, key, sizes, accounts);
      } catch (error) {
        errors.push(`prosody: ${(error as Error).message}`);
        log(errors.at(-1)!);
      }
    }
    if (only.has("parser")) {
      try {
        parser = await benchParser(sizes);
      } catch (error) {
        errors.push(`parser: ${(error as Error).message}`);
        log(errors.at(-1)!);
      }
    }
  } finally {
    if (!values.keep) await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  const prosodyVersion =
    (await run(["dpkg-query", "-W", "-f=${Version}", "prosody"]).catch(() => "?"))
      .trim();
  console.log(
    `\nLilt vs Prosody ${prosodyVersion}, ${
      values.quick ? "--quick" : "full"
    } run, ${started.toISOString()}, ` +
      `${navigator.hardwareConcurrency} CPUs, servers on CPU0, load on CPU1, TLS 1.3 ECDSA P-256, SCRAM-SHA-1 (${iterations} it.)`,
  );
  console.log(
    `sizes: ${sizes.logins} logins, ${sizes.pairs} pairs × ${sizes.seconds} s, ${sizes.idle} idle sessions, ${sizes.parserMb} MB parser corpus\n`,
  );
  printTable(rows(lilt, prosody, parser));
  for (const [name, r] of [["lilt", lilt], ["prosody", prosody]] as const) {
    for (const w of ["login", "messages", "memory"]) {
      const count = field(r, w, "errors", "count");
      const first = field(r, w, "errors", "first") as string[] | undefined;
      if (count) {
        errors.push(`${name} ${w}: ${count} failed logins, e.g. ${first?.join("; ")}`);
      }
    }
  }
  const notes: string[] = [];
  for (const [name, r] of [["lilt", lilt], ["prosody", prosody]] as const) {
    for (const note of (field(r, "messages", "notes") as string[] | undefined) ?? []) {
      notes.push(`${name} messages: ${note}`);
    }
  }
  if (notes.length) console.log(`\nnotes:\n- ${notes.join("\n- ")}`);
  if (errors.length) console.log(`\nerrors:\n- ${errors.join("\n- ")}`);
  const record = {
    bench: "lilt_vs_prosody",
    date: started.toISOString(),
    quick: values.quick,
    sizes,
    prosody_version: prosodyVersion,
    lilt,
    prosody,
    parser,
    errors,
  };
  const line = JSON.stringify(record);
  console.log("\n" + line);
  const resultsDir = join(benchDir, "results");
  await Deno.mkdir(resultsDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  await Deno.writeTextFile(
    join(resultsDir, `${stamp}${values.quick ? "-quick" : ""}.json`),
    JSON.stringify(record, null, 2) + "\n",
  );
}

if (import.meta.main) await main();
