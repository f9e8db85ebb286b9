// Sends datagrams to local Unix sockets (syslog's /dev/log, journald's socket, systemd's
// NOTIFY_SOCKET). Deno's own Unix datagram API needs --unstable-net and binds a path of its own,
// so this calls socket(2) and sendto(2) from the C library through FFI (--allow-ffi, which the
// server already has for SQLCipher); the C library is only opened when a sender is created.

/** The C library's socket constants and names on the systems Lilt runs on. */
interface Platform {
  libc: string;
  errnoSymbol: "__errno_location" | "__error";
  /** SOCK_CLOEXEC, or-ed into the socket type. */
  cloexec: number;
  /** MSG_DONTWAIT | MSG_NOSIGNAL: a full receiver drops the datagram instead of blocking. */
  sendFlags: number;
  /** sockaddr_un starts with a length byte (BSD) instead of a 16-bit family (Linux). */
  bsdAddress: boolean;
  /** Size of sun_path. */
  maxPath: number;
}

const PLATFORMS: Partial<Record<typeof Deno.build.os, Platform>> = {
  linux: {
    libc: "libc.so.6",
    errnoSymbol: "__errno_location",
    cloexec: 0x80000,
    sendFlags: 0x40 | 0x4000,
    bsdAddress: false,
    maxPath: 108,
  },
  freebsd: {
    libc: "libc.so.7",
    errnoSymbol: "__error",
    cloexec: 0x10000000,
    sendFlags: 0x80 | 0x20000,
    bsdAddress: true,
    maxPath: 104,
  },
};

const AF_UNIX = 1;
const SOCK_DGRAM = 2;

function symbols(errnoSymbol: Platform["errnoSymbol"]) {
  return {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    sendto: {
      parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
      result: "isize",
    },
    close: { parameters: ["i32"], result: "i32" },
    strerror: { parameters: ["i32"], result: "pointer" },
    [errnoSymbol]: { parameters: [], result: "pointer" },
  } as const;
}

type Libc = Deno.DynamicLibrary<ReturnType<typeof symbols>>;

let opened: { platform: Platform; lib: Libc } | undefined;

function libc(): { platform: Platform; lib: Libc } {
  if (opened) return opened;
  const platform = PLATFORMS[Deno.build.os];
  if (!platform) {
    throw new Error(`Unix datagram sockets are not supported on ${Deno.build.os}`);
  }
  try {
    opened = { platform, lib: Deno.dlopen(platform.libc, symbols(platform.errnoSymbol)) };
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error("Sending to a Unix datagram socket needs Deno's --allow-ffi permission");
    }
    throw new Error(`Cannot open the C library ${platform.libc}: ${(error as Error).message}`);
  }
  return opened;
}

function lastError({ platform, lib }: { platform: Platform; lib: Libc }): string {
  const where = (lib.symbols[platform.errnoSymbol] as () => Deno.PointerValue)();
  if (!where) return "unknown error";
  const errno = new Deno.UnsafePointerView(where).getInt32();
  const text = lib.symbols.strerror(errno);
  return text ? Deno.UnsafePointerView.getCString(text) : `errno ${errno}`;
}

/**
 * Encodes a sockaddr_un for `path`; a leading "@" names a Linux abstract socket (as systemd
 * writes NOTIFY_SOCKET). Throws when the path does not fit.
 */
function socketAddress(platform: Platform, path: string): Uint8Array {
  const abstract = path.startsWith("@");
  const name = new TextEncoder().encode(path);
  if (abstract) name[0] = 0;
  // A path name carries its terminating NUL; an abstract name is counted exactly.
  const length = name.length + (abstract ? 0 : 1);
  if (path === "" || path === "@" || length > platform.maxPath) {
    throw new Error(
      `Unix socket path '${path}' must be 1 to ${platform.maxPath - 1} bytes long`,
    );
  }
  const address = new Uint8Array(2 + length);
  if (platform.bsdAddress) {
    address[0] = address.length;
    address[1] = AF_UNIX;
  } else {
    new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  }
  address.set(name, 2);
  return address;
}

/**
 * An unbound Unix datagram socket that sends to one address without ever blocking: when the
 * receiver's queue is full the datagram is dropped and `send` says why.
 *
 * @example
 * ```ts
 * const socket = new UnixDatagramSender("/run/systemd/journal/socket");
 * const error = socket.send(new TextEncoder().encode("MESSAGE=hello\n"));
 * if (error) console.error(error);
 * socket.close();
 * ```
 */
export class UnixDatagramSender {
  /** The socket path datagrams go to ("@name": a Linux abstract socket). */
  readonly path: string;
  #libc: { platform: Platform; lib: Libc };
  #address: Uint8Array<ArrayBuffer>;
  #fd: number;

  /** Opens the socket; throws when FFI is not allowed or the path cannot be a socket path. */
  constructor(path: string) {
    this.path = path;
    this.#libc = libc();
    this.#address = socketAddress(this.#libc.platform, path) as Uint8Array<ArrayBuffer>;
    const { platform, lib } = this.#libc;
    this.#fd = lib.symbols.socket(AF_UNIX, SOCK_DGRAM | platform.cloexec, 0);
    if (this.#fd < 0) throw new Error(`Cannot open a Unix datagram socket: ${lastError(opened!)}`);
  }

  /** Sends one datagram; returns undefined when it was sent, else the system's reason. */
  send(datagram: Uint8Array<ArrayBuffer>): string | undefined {
    if (this.#fd < 0) return "the socket is closed";
    const { platform, lib } = this.#libc;
    const sent = lib.symbols.sendto(
      this.#fd,
      datagram,
      BigInt(datagram.length),
      platform.sendFlags,
      this.#address,
      this.#address.length,
    );
    return sent < 0n ? lastError(this.#libc) : undefined;
  }

  /** Closes the socket; later sends fail. */
  close(): void {
    if (this.#fd < 0) return;
    this.#libc.lib.symbols.close(this.#fd);
    this.#fd = -1;
  }
}
