// Runs Lilt as an operator does, `main.ts start -c FILE` in a process of its own, for tests of
// the command line: the server's standard error is read as it comes, so a test can wait for
// what it logs ("lilt: serving", a reload) and stop the process whatever happened.

import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The line `lilt start` logs once it listens, with the plain c2s port. */
const SERVING = /^lilt: serving .*?\bc2s 127\.0\.0\.1:(\d+)/m;

/** A running `lilt start` process. */
export interface LiltProcess {
  /** The process: for signals and its exit status. */
  process: Deno.ChildProcess;
  /** The c2s (STARTTLS) port named in the "lilt: serving" line. */
  port: number;
  /** Everything the process wrote to standard error so far. */
  readonly log: string;
  /**
   * Reads standard error until the log matches `pattern`, then returns the match; throws with
   * the log when the process ends first or after `timeoutMs`.
   */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /**
   * Kills the process (SIGKILL) unless it has already exited, waits for it and stops reading its
   * standard error. Safe to call after the test stopped the process itself.
   */
  stop(): Promise<void>;
}

/** Another way to run `lilt` than `deno run -A main.ts` in the repository's root. */
export interface LiltLaunch {
  /** The program, e.g. Deno or a compiled binary. */
  command: string;
  /** Its arguments before `start -c FILE`, e.g. `["run", ...permissions, "lilt.js"]`. */
  args: string[];
  /** The working directory. */
  cwd: string;
  /** Environment variables to add. */
  env?: Record<string, string>;
}

/**
 * Spawns `main.ts start -c configFile` in the repository's root (or as `launch` says; standard
 * output discarded) and waits until it logs "lilt: serving"; when it does not within
 * `timeoutMs`, the process is stopped and the error names what it logged.
 */
export async function startLiltProcess(
  configFile: string,
  timeoutMs = 20_000,
  launch?: LiltLaunch,
): Promise<LiltProcess> {
  const process = new Deno.Command(launch?.command ?? Deno.execPath(), {
    args: [...(launch?.args ?? ["run", "-A", `${ROOT}main.ts`]), "start", "-c", configFile],
    cwd: launch?.cwd ?? ROOT,
    env: launch?.env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = process.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  // A read a timeout gave up on still delivers its text to the next wait.
  let pending: Promise<ReadableStreamReadResult<string>> | undefined;
  const lilt: LiltProcess = {
    process,
    port: 0,
    get log() {
      return log;
    },
    async waitFor(pattern, waitMs = 20_000) {
      const deadline = Date.now() + waitMs;
      while (!pattern.test(log)) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Timed out waiting for ${pattern}:\n${log}`)),
            Math.max(deadline - Date.now(), 0),
          );
        });
        pending ??= reader.read();
        const { value, done } = await Promise.race([pending, timeout]).finally(() =>
          clearTimeout(timer)
        );
        pending = undefined;
        if (done) throw new Error(`The server exited before logging ${pattern}:\n${log}`);
        log += value;
      }
      return pattern.exec(log)!;
    },
    async stop() {
      try {
        process.kill("SIGKILL");
      } catch {
        // already exited
      }
      await process.status;
      await reader.cancel().catch(() => {});
    },
  };
  try {
    lilt.port = Number((await lilt.waitFor(SERVING, timeoutMs))[1]);
  } catch (error) {
    await lilt.stop();
    throw error;
  }
  return lilt;
}

/** What a finished command printed, decoded, and its exit code. */
export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Writes `stdin` (when given) to a spawned command, waits for it, and decodes its output. */
export async function finish(child: Deno.ChildProcess, stdin?: string): Promise<CommandOutput> {
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/**
 * Runs `main.ts ARGS` as an operator would, in a process of its own (from the repository root
 * unless `cwd` says otherwise, with `stdin` written to it when given, and without the caller's
 * LILT_CONFIG so that only `-c` or the default search picks the configuration).
 */
export function runLilt(
  args: string[],
  options: { stdin?: string; cwd?: string } = {},
): Promise<CommandOutput> {
  const env = Deno.env.toObject();
  delete env.LILT_CONFIG;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    cwd: options.cwd ?? REPO_ROOT,
    env,
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return finish(child, options.stdin);
}
