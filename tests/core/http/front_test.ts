// The HTTPS front's relay over real sockets: a request body sent faster than the route reads it
// waits in the client's socket, not in the server's memory (uploads stream to disk).

import assert from "node:assert/strict";
import * as tls from "node:tls";
import type { ModuleAPI } from "../../../core/modules.ts";
import { startTestServer } from "../../helpers/test_server.ts";

const BODY = 64 * 1024 * 1024;
const CHUNK = 64 * 1024;
/** The route reads this much, then lets the event loop run for a while. */
const READ_STEP = 256 * 1024;

Deno.test("an HTTPS upload faster than its route is held back by the client, not buffered", async () => {
  const t = await startTestServer({
    modules: ["disco"],
    globalToml: 'https_interfaces = ["127.0.0.1:0"]',
  });
  // Bytes the client's socket has taken (write callbacks), read by the route as it goes.
  let flushed = 0;
  t.server.modules.register("slow_reader", {
    default(m: ModuleAPI) {
      m.httpRoute("PUT", "/slow", async (request) => {
        let received = 0;
        let step = 0;
        let maxAhead = 0;
        for await (const chunk of request.body!) {
          received += chunk.byteLength;
          maxAhead = Math.max(maxAhead, flushed - received);
          step += chunk.byteLength;
          if (step >= READ_STEP) {
            step = 0;
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        }
        return Response.json({ received, maxAhead });
      }, { maxBodyBytes: () => BODY });
    },
  });
  await t.server.modules.load(t.server.hosts.get("localhost")!, "slow_reader");
  const socket = tls.connect({
    host: "127.0.0.1",
    port: t.server.port("https"),
    servername: "localhost",
    rejectUnauthorized: false,
    ALPNProtocols: ["http/1.1"],
  });
  try {
    await new Promise((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    let answer = "";
    const answered = new Promise<void>((resolve) => {
      socket.on("data", (data: Uint8Array) => {
        answer += new TextDecoder().decode(data);
        if (/\r\n\r\n[\s\S]*\}/.test(answer)) resolve();
      });
      socket.once("close", () => resolve());
    });
    socket.write(
      `PUT /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${BODY}\r\nConnection: close\r\n\r\n`,
    );
    let sent = 0;
    await new Promise<void>((resolve) => {
      const more = () => {
        while (sent < BODY) {
          const chunk = new Uint8Array(CHUNK);
          sent += CHUNK;
          const ok = socket.write(chunk, () => flushed += CHUNK);
          if (!ok) {
            socket.once("drain", more);
            return;
          }
        }
        resolve();
      };
      more();
    });
    await answered;
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
    assert.equal(body.received, BODY);
    // What the client got ahead of the route is what sockets hold on the way (a few MB);
    // before the relay paused the TCP socket beneath TLS it was most of the body.
    assert.ok(
      body.maxAhead < BODY / 2,
      `the client was up to ${body.maxAhead} bytes ahead of the route`,
    );
  } finally {
    socket.destroy();
    await t.stop();
  }
});
