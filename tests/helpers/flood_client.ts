// A flooding client in its own process, for the rate limit tests: the server's memory can then
// be measured without the flood's own buffers in it. It logs in alice (STARTTLS, direct TLS with
// --direct-tls, or in the clear with --plain), writes COUNT headline messages to bob's bare JID (bob is offline: the server
// routes each and discards it, so nothing comes back) as fast as the socket takes them, and
// reports one JSON line per 100 ms on standard output until standard input closes.
//
// deno run -A tests/helpers/flood_client.ts PORT COUNT BODY_BYTES [--direct-tls | --plain]

import type { Socket } from "node:net";
import { RawClient } from "./raw_client.ts";

/** One progress line of the flood client. */
export interface FloodReport {
  /** "ready" once logged in, then "flooding". */
  phase: "ready" | "flooding";
  /** Bytes the flooder handed to its socket. */
  written: number;
  /** Bytes its socket still holds unsent (the server is not reading them). */
  backlog: number;
  /** ms since the flood started. */
  elapsedMs: number;
}

async function login(port: number, user: string, mode: string): Promise<RawClient> {
  if (mode === "starttls") return (await RawClient.login(port, user, `${user}-pw`, "flood")).client;
  const client = await RawClient.connect(port, { tls: mode === "direct-tls" });
  await client.open();
  await client.loginPlain(user, `${user}-pw`, "flood");
  return client;
}

async function main(): Promise<void> {
  const [portText, countText, bodyText] = Deno.args;
  const mode = Deno.args.includes("--direct-tls")
    ? "direct-tls"
    : Deno.args.includes("--plain")
    ? "plain"
    : "starttls";
  const port = Number(portText);
  const count = Number(countText);
  const body = "x".repeat(Number(bodyText));
  const flooder = await login(port, "alice", mode);
  const out = Deno.stdout;
  const encoder = new TextEncoder();
  const report = (line: FloodReport) => out.writeSync(encoder.encode(JSON.stringify(line) + "\n"));
  const socket = flooder.socket as Socket;
  report({ phase: "ready", written: 0, backlog: 0, elapsedMs: 0 });
  const started = performance.now();
  let written = 0;
  // Batches of 100 messages, one write each, as fast as the socket takes them.
  const batch = (from: number) => {
    let text = "";
    for (let i = from; i < Math.min(count, from + 100); i++) {
      text +=
        `<message to='bob@localhost' id='f${i}' type='headline'><body>${body}</body></message>`;
    }
    written += text.length;
    socket.write(text);
  };
  for (let i = 0; i < count; i += 100) batch(i);
  let stop = false;
  Deno.stdin.readable.pipeTo(new WritableStream()).finally(() => stop = true);
  while (!stop) {
    report({
      phase: "flooding",
      written,
      backlog: socket.writableLength,
      elapsedMs: Math.round(performance.now() - started),
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  flooder.close();
  Deno.exit(0);
}

if (import.meta.main) await main();
