// Reading secrets for the command line: a password prompt without echo on a terminal, or the
// first line of standard input when it is not a terminal (scripts, cron, pipes). New passwords
// are asked twice on a terminal.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads one line from standard input (without the line ending); "" at end of input. */
export async function readStdinLine(): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(1);
  while (true) {
    const n = await Deno.stdin.read(buffer);
    if (n === null || n === 0) break;
    if (buffer[0] === 0x0a) break;
    chunks.push(buffer.slice(0, 1));
  }
  let line = decoder.decode(concat(chunks));
  if (line.endsWith("\r")) line = line.slice(0, -1);
  return line;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/**
 * Asks for a secret. On a terminal the prompt goes to stderr and typing is not echoed;
 * otherwise the first line of stdin is used. Rejects when the user presses Ctrl-C or Ctrl-D.
 */
export async function promptSecret(prompt: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) return await readStdinLine();
  await Deno.stderr.write(encoder.encode(prompt));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  try {
    const buffer = new Uint8Array(64);
    outer: while (true) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) break;
      for (let i = 0; i < n; i++) {
        const b = buffer[i];
        if (b === 0x0d || b === 0x0a) break outer;
        if (b === 0x03 || b === 0x04) throw new Error("Cancelled");
        if (b === 0x7f || b === 0x08) bytes.pop();
        else bytes.push(b);
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(encoder.encode("\n"));
  }
  return decoder.decode(new Uint8Array(bytes));
}

/** The second prompt of `promptNewSecret`. */
export const REPEAT_PROMPT = "Repeat the password: ";

/** Two typed secrets differ: nothing was changed. */
export const MISMATCH_MESSAGE = "The passwords differ; nothing was changed";

/**
 * Asks for a new secret. On a terminal it is asked twice without echo (a typo cannot lock the
 * account) and a mismatch throws; otherwise the first line of stdin is used.
 */
export async function promptNewSecret(prompt: string): Promise<string> {
  const secret = await promptSecret(prompt);
  if (!Deno.stdin.isTerminal()) return secret;
  if (await promptSecret(REPEAT_PROMPT) !== secret) throw new Error(MISMATCH_MESSAGE);
  return secret;
}
