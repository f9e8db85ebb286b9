// A Unix datagram socket a test listens on, standing in for /dev/log, journald's socket or
// systemd's NOTIFY_SOCKET. Deno only binds one with --unstable-net, which the test runner does
// not have, so a child Deno with that flag binds it and prints each datagram as a base64 line.

/** A bound Unix datagram socket whose datagrams the test reads in order. */
export interface UnixDatagramListener {
  /** The socket's path. */
  path: string;
  /** The next datagram received (waits for it). */
  next(): Promise<Uint8Array>;
  /** Stops listening and removes the socket file. */
  close(): Promise<void>;
}

const CHILD = `
const socket = Deno.listenDatagram({ transport: "unixpacket", path: Deno.args[0] });
const out = new TextEncoder();
await Deno.stdout.write(out.encode("ready\\n"));
for await (const [data] of socket) {
  let text = "";
  for (const byte of data) text += String.fromCharCode(byte);
  await Deno.stdout.write(out.encode(btoa(text) + "\\n"));
}
`;

/** Binds a Unix datagram socket at `path` and resolves once it is listening. */
export async function listenUnixDatagrams(path: string): Promise<UnixDatagramListener> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-net", CHILD, path],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  async function line(): Promise<string> {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`The datagram listener on ${path} ended`);
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const text = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return text;
  }
  if (await line() !== "ready") throw new Error(`The datagram listener on ${path} did not start`);
  return {
    path,
    async next() {
      return Uint8Array.from(atob(await line()), (c) => c.charCodeAt(0));
    },
    async close() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await lines.cancel().catch(() => {});
      await Deno.remove(path).catch(() => {});
    },
  };
}

/** Parses one datagram of journald's native protocol into its fields (binary values too). */
export function parseJournalFields(datagram: Uint8Array): Map<string, string> {
  const fields = new Map<string, string>();
  const decoder = new TextDecoder();
  let at = 0;
  while (at < datagram.length) {
    const lineEnd = datagram.indexOf(0x0a, at);
    const line = decoder.decode(datagram.subarray(at, lineEnd));
    const equals = line.indexOf("=");
    if (equals >= 0) {
      fields.set(line.slice(0, equals), line.slice(equals + 1));
      at = lineEnd + 1;
      continue;
    }
    const length = Number(
      new DataView(datagram.buffer, datagram.byteOffset + lineEnd + 1, 8).getBigUint64(0, true),
    );
    const start = lineEnd + 9;
    fields.set(line, decoder.decode(datagram.subarray(start, start + length)));
    if (datagram[start + length] !== 0x0a) throw new Error(`Field ${line} lacks its newline`);
    at = start + length + 1;
  }
  return fields;
}
