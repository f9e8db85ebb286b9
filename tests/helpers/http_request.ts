// A raw HTTP/1.1 request for tests that must set the Host header (fetch does not allow it),
// with a chunked request body on demand.

/**
 * Sends one HTTP/1.1 request over a raw socket (fetch does not let a test set the Host
 * header) and returns the status and body. `chunked` sends the body without Content-Length;
 * `headers` are added to the request as given.
 */
export async function rawRequest(
  url: string,
  host: string,
  init: { method?: string; body?: string; chunked?: boolean; headers?: Record<string, string> } =
    {},
): Promise<{ status: number; body: string; headers: string }> {
  const { hostname, port, pathname } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    const body = init.body ?? "";
    const framing = init.chunked
      ? `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
      : `Content-Length: ${body.length}\r\n\r\n${body}`;
    const head = `${init.method ?? "GET"} ${pathname} HTTP/1.1\r\nHost: ${host}\r\n` +
      `Connection: close\r\n` +
      Object.entries(init.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await conn.write(new TextEncoder().encode(head + framing));
    const text = await new Response(conn.readable).text();
    const status = Number(text.slice(9, 12));
    const headers = text.slice(0, text.indexOf("\r\n\r\n")).toLowerCase();
    let rest = text.slice(text.indexOf("\r\n\r\n") + 4);
    if (headers.includes("transfer-encoding: chunked")) {
      let decoded = "";
      while (true) {
        const line = rest.indexOf("\r\n");
        const size = parseInt(rest.slice(0, line), 16);
        if (!size) break;
        decoded += rest.slice(line + 2, line + 2 + size);
        rest = rest.slice(line + 2 + size + 2);
      }
      rest = decoded;
    }
    return { status, body: rest, headers };
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed by the server.
    }
  }
}
