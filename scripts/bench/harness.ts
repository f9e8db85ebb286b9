// Process plumbing shared by the benchmark runners (compare.ts, ejabberd.ts): starting a server
// pinned to CPU0, waiting for its port, running the load client on CPU1, SCRAM credentials.

import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deriveCredentials } from "../../core/auth/scram.ts";

/** The repository root. */
export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** scripts/bench. */
export const benchDir = join(root, "scripts/bench");
/** The one virtual host every server serves. */
export const domain = "localhost";
/** The password of every benchmark account. */
export const password = "benchpass";
/** Accounts are `${prefix}0`, `${prefix}1`, … */
export const prefix = "bench";
/** SCRAM-SHA-1 iteration count of every stored credential. */
export const iterations = 4096;

/** Workload sizes; --quick shrinks them. */
export interface Sizes {
  logins: number;
  pairs: number;
  idle: number;
  seconds: number;
  parserMb: number;
}

/** What every server runner gets: the run's directory, the shared certificate, the sizes. */
export interface BenchSetup {
  /** The run's temporary directory; each server makes its own subdirectory. */
  work: string;
  /** ECDSA P-256 certificate (PEM) for `localhost`, used by every server. */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  sizes: Sizes;
  /** Accounts to create: `${prefix}0` … `${prefix}${accounts - 1}`. */
  accounts: number;
}

/** Parsed JSON figures: workload -> metric -> value for a server, or the parser's flat record. */
export type Figures = Record<string, unknown>;

/** Logs a progress line on stderr. */
export function log(text: string): void {
  console.error(`[bench] ${text}`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free loopback TCP port (closed again before it is used). */
export function freePort(): Promise<number> {
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
export async function waitForPort(
  port: number,
  options: { ms: number; child: Deno.ChildProcess },
): Promise<void> {
  const deadline = Date.now() + options.ms;
  let exited = false;
  options.child.status.then(() => exited = true);
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
  throw new Error(`Nothing listened on port ${port} within ${options.ms} ms`);
}

/** Runs a command to completion and returns its stdout; throws with its stderr on failure. */
export async function run(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: options.cwd ?? root,
    env: options.env,
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

/**
 * Starts a server pinned to CPU0 with its output in `logFile`. taskset execs the command, so
 * the child's PID is the server's own as long as the command execs its way to the server.
 */
export async function startServer(
  cmd: string[],
  options: { logFile: string; env?: Record<string, string> },
): Promise<Deno.ChildProcess> {
  const file = await Deno.open(options.logFile, { write: true, create: true, truncate: true });
  const child = new Deno.Command("taskset", {
    args: ["-c", "0", ...cmd],
    cwd: root,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  child.stdout.pipeTo(file.writable, { preventClose: true }).catch(() => {});
  child.stderr.pipeTo((await Deno.open(options.logFile, { append: true })).writable).catch(
    () => {},
  );
  return child;
}

/** Stops a server by PID with SIGTERM, and SIGKILL when it has not exited after 10 s. */
export async function stopServer(child: Deno.ChildProcess, name: string): Promise<void> {
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

/** Runs load_client.ts pinned to CPU1 against `port`, measuring process `pid`; returns its JSON. */
export async function runLoad(port: number, options: { pid: number; sizes: Sizes }): Promise<
  Figures
> {
  const { pid, sizes } = options;
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

/** SCRAM-SHA-1 StoredKey and ServerKey of the benchmark password for one salt (RFC 5802). */
export async function scramSha1(salt: Uint8Array): Promise<{
  stored: Uint8Array;
  server: Uint8Array;
}> {
  const keys = await deriveCredentials(password, { hash: "SHA-1", salt, iterations });
  return { stored: keys.storedKey, server: keys.serverKey };
}

/** Runs `make(i)` for i in 0..count-1, at most `batch` at a time. */
export async function inBatches(
  count: number,
  options: { batch: number; make: (i: number) => Promise<void> },
): Promise<void> {
  for (let i = 0; i < count; i += options.batch) {
    const jobs = [];
    for (let j = i; j < Math.min(count, i + options.batch); j++) jobs.push(options.make(j));
    await Promise.all(jobs);
  }
}
