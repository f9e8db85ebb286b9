// Watches a server process a test started (Prosody, ejabberd): keeps the tail of what it
// prints for error messages, knows when it exited, and stops it with SIGTERM, then SIGKILL.

/** Characters of output kept for error messages. */
const OUTPUT_KEPT = 100_000;

/** A child process with its output collected and a polite stop. */
export interface SupervisedProcess {
  /** The last 100,000 characters it printed on stdout and stderr. */
  output(): string;
  /** Its exit status once it has exited. */
  exitStatus(): Deno.CommandStatus | undefined;
  /** SIGTERM, SIGKILL after `graceMs` (default 5000); resolves once it exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Supervises a child spawned with piped stdout and stderr. */
export function supervise(child: Deno.ChildProcess): SupervisedProcess {
  let output = "";
  const drain = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write(chunk) {
          output = (output + chunk).slice(-OUTPUT_KEPT);
        },
      }),
    ).catch(() => {});
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => (exited = s));
  let stopping: Promise<void> | undefined;
  return {
    output: () => output,
    exitStatus: () => exited,
    stop: (graceMs = 5000) =>
      stopping ??= (async () => {
        if (exited === undefined) {
          try {
            child.kill("SIGTERM");
          } catch { /* already gone */ }
          let timer: ReturnType<typeof setTimeout> | undefined;
          const killed = await Promise.race([
            status.then(() => false),
            new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
          ]);
          clearTimeout(timer);
          if (killed) {
            try {
              child.kill("SIGKILL");
            } catch { /* gone */ }
          }
        }
        await status;
        await drained;
      })(),
  };
}

/** What {@link waitForLogLine} watches. */
export interface LogWatch {
  /** The server's name for messages ("Prosody"). */
  name: string;
  /** Reads the whole log file ("" before it exists). */
  read: () => Promise<string>;
  /** The server's process: waiting stops early when it exits. */
  process: SupervisedProcess;
}

/**
 * Waits until the log (from character offset `from`) matches `pattern` and resolves with the
 * whole line holding the match; rejects with the log's tail on timeout or when the process
 * exits first.
 */
export async function waitForLogLine(
  watch: LogWatch,
  pattern: RegExp,
  timeoutMs = 5000,
  from = 0,
): Promise<string> {
  const plain = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ""));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = (await watch.read()).slice(from);
    const match = plain.exec(text);
    if (match) {
      const start = text.lastIndexOf("\n", match.index) + 1;
      const end = text.indexOf("\n", match.index + match[0].length);
      return text.slice(start, end === -1 ? undefined : end);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out waiting for ${pattern} in ${watch.name}'s log; its tail:\n${text.slice(-3000)}`,
      );
    }
    const exited = watch.process.exitStatus();
    if (exited !== undefined) {
      throw new Error(`${watch.name} exited (code ${exited.code}) before logging ${pattern}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What the Prosody and ejabberd harnesses hand a test: ports, files, log access and stop. */
export interface PeerServer {
  /** The host served. */
  readonly domain: string;
  /** Process id of the server. */
  readonly pid: number;
  /** Port of the c2s listener (STARTTLS). */
  readonly c2sPort: number;
  /** Port of the s2s listener (STARTTLS). */
  readonly s2sPort: number;
  /** The temporary directory holding config, data and logs. */
  readonly dir: string;
  /** The generated config file. */
  readonly configFile: string;
  /** The server's log file. */
  readonly logFile: string;
  /** The whole log so far ("" when not written yet). */
  log(): Promise<string>;
  /**
   * Waits until the log (from character offset `from`, default 0) matches `pattern`;
   * resolves with the whole line holding the match. Rejects with the log's tail on timeout.
   */
  waitForLog(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Creates an account while the server runs. */
  register(user: string, password: string): Promise<void>;
  /** What the server printed on stdout and stderr (start-up errors land here). */
  output(): string;
  /** SIGTERM, SIGKILL after 5 s, then removes the temporary directory. Idempotent. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** `count` distinct ports nothing listens on right now (bound together, then closed). */
export function freePorts(count: number, hostname = "127.0.0.1"): number[] {
  const listeners = Array.from({ length: count }, () => Deno.listen({ hostname, port: 0 }));
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/**
 * Polls until `watch.process`'s server accepts TCP connections on every port; rejects when
 * the process exits first or at `deadline` (ms epoch).
 */
export async function waitForListeners(
  watch: Pick<LogWatch, "name" | "process">,
  hostname: string,
  ports: number[],
  deadline: number,
): Promise<void> {
  const pending = new Set(ports);
  for (;;) {
    for (const port of [...pending]) {
      try {
        const conn = await Deno.connect({ hostname, port });
        conn.close();
        pending.delete(port);
      } catch { /* not yet */ }
    }
    if (pending.size === 0) return;
    const exited = watch.process.exitStatus();
    const waiting = [...pending].join(", ");
    if (exited !== undefined) {
      throw new Error(
        `${watch.name} exited with code ${exited.code} before listening on ${waiting}`,
      );
    }
    if (Date.now() >= deadline) {
      throw new Error(`${watch.name} did not listen on ${waiting} in time`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
