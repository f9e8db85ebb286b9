// Starts throwaway message brokers (Debian's nats-server and redis-server) on loopback for the
// cluster tests and the broker benchmark of issue 19: each in its own temp dir, never the system's.

import {
  freePorts,
  supervise,
  type SupervisedProcess,
  waitForListeners,
} from "./supervised_process.ts";

/** Where Debian installs the NATS server. */
export const NATS_SERVER_BIN = "/usr/sbin/nats-server";
/** Where Debian installs the Redis server. */
export const REDIS_SERVER_BIN = "/usr/bin/redis-server";
const INSTALL_HINT = "run scripts/install-test-deps as root (or: sudo apt-get install " +
  "nats-server redis-server)";
/** How long a broker may take to accept connections. */
const START_TIMEOUT_MS = 10_000;

/** A broker process a test or benchmark started. */
export interface Broker {
  /** What clients connect to: `nats://127.0.0.1:PORT` or `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** The loopback port it listens on. */
  readonly port: number;
  /** Process id of the server, for `/proc/PID/stat`. */
  readonly pid: number;
  /** Its temporary directory (JetStream's store, Redis's working directory). */
  readonly dir: string;
  /** What the server printed (its log goes to stdout). */
  output(): string;
  /**
   * Kills the server (SIGTERM, SIGKILL after 5 s) and waits for it to exit; removes the
   * temporary directory unless `keepDir`. Idempotent.
   */
  stop(options?: { keepDir?: boolean }): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options shared by {@link startNats} and {@link startRedis}. */
export interface BrokerOptions {
  /** Port to listen on (default: a free one). Restart tests pass the port a client knows. */
  port?: number;
  /** Directory to use instead of a fresh temporary one (kept by `stop()`). */
  dir?: string;
  /** Extra command-line arguments. */
  args?: string[];
}

/** Options for {@link startNats}. */
export interface NatsOptions extends BrokerOptions {
  /** Enables JetStream (`-js -sd <dir>/jetstream`), needed for key-value buckets. */
  jetstream?: boolean;
}

/**
 * Starts `nats-server -a 127.0.0.1 -p PORT` and resolves once it accepts connections.
 *
 * @example
 * ```ts
 * await using nats = await startNats({ jetstream: true });
 * const nc = await connect({ servers: nats.url });
 * ```
 */
export async function startNats(options: NatsOptions = {}): Promise<Broker> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "lilt-nats-" });
  const port = options.port ?? freePorts(1)[0];
  const args = ["-a", "127.0.0.1", "-p", String(port)];
  if (options.jetstream) args.push("-js", "-sd", `${dir}/jetstream`);
  args.push(...options.args ?? []);
  return await launch("nats-server", NATS_SERVER_BIN, args, {
    url: `nats://127.0.0.1:${port}`,
    port,
    dir,
    ownDir: options.dir === undefined,
  });
}

/**
 * Starts `redis-server` on 127.0.0.1 with persistence off (`--save "" --appendonly no`) and
 * resolves once it accepts connections.
 */
export async function startRedis(options: BrokerOptions = {}): Promise<Broker> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "lilt-redis-" });
  const port = options.port ?? freePorts(1)[0];
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    "",
    ...options.args ?? [],
  ];
  return await launch("redis-server", REDIS_SERVER_BIN, args, {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    ownDir: options.dir === undefined,
  });
}

async function launch(
  name: string,
  bin: string,
  args: string[],
  where: { url: string; port: number; dir: string; ownDir: boolean },
): Promise<Broker> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(bin, { args, cwd: where.dir, stdout: "piped", stderr: "piped" })
      .spawn();
  } catch (error) {
    if (where.ownDir) await Deno.remove(where.dir, { recursive: true }).catch(() => {});
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot start ${name}: ${bin} is missing; ${INSTALL_HINT}`);
    }
    throw error;
  }
  const process: SupervisedProcess = supervise(child);
  let stopping: Promise<void> | undefined;
  const stop = (options: { keepDir?: boolean } = {}) =>
    stopping ??= (async () => {
      await process.stop();
      if (where.ownDir && !options.keepDir) {
        await Deno.remove(where.dir, { recursive: true }).catch(() => {});
      }
    })();
  try {
    await waitForListeners(
      { name, process },
      "127.0.0.1",
      [where.port],
      Date.now() + START_TIMEOUT_MS,
    );
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}; its output:\n${process.output().slice(-3000)}`);
  }
  return {
    url: where.url,
    port: where.port,
    pid: child.pid,
    dir: where.dir,
    output: () => process.output(),
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}
