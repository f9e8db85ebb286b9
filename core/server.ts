// Assembles a running server from a Config: storage, hosts, certificates, modules and
// listeners; and takes it apart again (reload on SIGHUP, graceful shutdown on SIGTERM).

import type { Socket } from "node:net";
import { CommandRegistry } from "./admin_commands.ts";
import { startAccountMaintenance } from "./auth/account_lifecycle.ts";
import { AccountStore } from "./auth/accounts.ts";
import { FastTokens } from "./auth/fast.ts";
import { AuthThrottle } from "./auth/throttle.ts";
import type { Config } from "./config.ts";
import { configChanges, describeChange } from "./config_changes.ts";
import type { ServerContext } from "./context.ts";
import { Host } from "./hosts.ts";
import { configureLogging, getLogger } from "./log.ts";
import { EventLoopLag } from "./event_loop_lag.ts";
import { ScheduledTimers } from "./timers.ts";
import { MemoryTrimmer } from "./memory.ts";
import { Metrics } from "./metrics.ts";
import { ModuleManager, type ModuleReloadOutcome, type ModuleTable } from "./modules.ts";
import { acceptC2S, C2SSession } from "./net/c2s.ts";
import { ComponentSession } from "./net/component.ts";
import {
  type LoadedCertificate,
  loadOrCreateCertificate,
  loadStoredCertificate,
} from "./net/certificates.ts";
import { listen, type Listener } from "./net/listener.ts";
import { type ListenAddress, parseListenAddress } from "./config_schema.ts";
import { type CertificateChange, TlsContexts, type TlsHostEntry } from "./net/tls.ts";
import { loadTrustStore } from "./net/peer_certificate.ts";
import { AccountStanzaLimits } from "./net/rate_limit.ts";
import { S2SManager } from "./s2s/manager.ts";
import { federationConfigured, s2sTrustOptions } from "./s2s/policy.ts";
import { Router } from "./router.ts";
import { type Session, SessionManager } from "./sessions.ts";
import { Database, storageOptions } from "./storage/database.ts";
import { sharedDialbackSecret } from "./s2s/shared_secret.ts";
import { Storage } from "./storage/stores.ts";
import { type HttpListenOptions, listenHttp } from "./http/listener.ts";
import { AddressRanges } from "./net/address_ranges.ts";
import { HttpRoutes } from "./http/routes.ts";
import { WEBSOCKET_PATH, websocketHandler } from "./http/websocket_route.ts";
import { hostMetaHandlers } from "./http/host_meta.ts";
import { BOSH_PATH, boshHandlers, BoshSessions } from "./http/bosh_route.ts";
import type { Element } from "./xml/element.ts";
import type { Cluster } from "./cluster/cluster.ts";
import type { StreamErrorCondition } from "./xml/stanza.ts";

const log = getLogger("server");

/** The options that list listen addresses. */
type ListenOption =
  | "c2s_interfaces"
  | "c2s_direct_tls_interfaces"
  | "component_interfaces"
  | "s2s_interfaces"
  | "s2s_direct_tls_interfaces"
  | "http_interfaces"
  | "https_interfaces";

/** The listen addresses of an interfaces option (validated when the config was loaded). */
function addresses(config: Config, option: ListenOption): ListenAddress[] {
  return config.get<string[]>(option).map((text) => parseListenAddress(text)!);
}

export type { ReloadReport } from "./config_changes.ts";
import type { ReloadReport } from "./config_changes.ts";

/** Options for `Server.start`. */
export interface ServerOptions {
  /** The modules that can be enabled (the built-in table, plus plugins later). */
  modules: ModuleTable;
  /** Configure logging from the config (false in tests that set logging up themselves). */
  configureLogging?: boolean;
}

/** The session a host uses as origin for stanzas it sends itself (replies route back). */
class HostSession implements Session {
  readonly id: string;
  readonly kind = "internal" as const;
  readonly jid = undefined;
  readonly ip = "internal";
  readonly secure = true;
  readonly authenticated = true;
  readonly connectedAt = Date.now();
  readonly lastActivity = Date.now();
  readonly host: string;
  #route: (stanza: Element, origin: Session) => void;

  constructor(host: string, route: (stanza: Element, origin: Session) => void) {
    this.id = `host:${host}`;
    this.host = host;
    this.#route = route;
  }

  send(stanza: Element): void {
    this.#route(stanza, this);
  }

  close(): void {}
}

/** A running Lilt server. */
export class Server implements ServerContext {
  config: Config;
  readonly sessions: SessionManager = new SessionManager();
  readonly hosts: Map<string, Host> = new Map();
  readonly database: Database;
  readonly storage: Storage;
  readonly accounts: AccountStore;
  readonly router: Router;
  readonly modules: ModuleManager;
  readonly throttle: AuthThrottle;
  /** Per-account stanza rates, shared by each account's client sessions (c2s.ts reads them). */
  readonly stanzaLimits: AccountStanzaLimits = new AccountStanzaLimits();
  /** XEP-0484 FAST tokens. */
  readonly fastTokens: FastTokens;
  readonly startedAt = Date.now();
  /** Admin shell commands (built-in sections and those modules add). */
  readonly commands: CommandRegistry = new CommandRegistry();
  /** Counters (`stats counters`; /metrics and `stats show` read some of them). */
  readonly metrics: Metrics = new Metrics();
  /** Event-loop lag, sampled from start to shutdown (/metrics, `debug loop`). */
  readonly loopLag: EventLoopLag = new EventLoopLag();
  /** The timers modules and the core set, with their owners (`debug timers`). */
  readonly timers: ScheduledTimers = new ScheduledTimers();
  tls!: TlsContexts;
  /** The certificates in force: one per host, and one per component that has its own. */
  #certificates: TlsHostEntry[] = [];
  /** Server-side TLS for the `https_interfaces` listeners (ALPN http/1.1, SNI per host). */
  httpsTls: TlsContexts | undefined;
  /** HTTP routes modules registered, by host (served by the `http_interfaces` listeners). */
  readonly http: HttpRoutes = new HttpRoutes();
  /** Live XEP-0206 BOSH sessions by sid (every local host's `/http-bind` shares them). */
  readonly boshSessions: BoshSessions = new BoshSessions();
  /** Removes the routes the core serves for each local host (RFC 7395, XEP-0206, XEP-0156). */
  #hostRoutes = new Map<string, () => void>();
  /** Server-side TLS for s2s streams (asks peers for certificates); set when federating. */
  s2sTls: TlsContexts | undefined;
  /** Federation; undefined without s2s listeners. */
  remote: S2SManager | undefined;
  /** This node's membership of a cluster; undefined without a [cluster] table. */
  cluster: Cluster | undefined;
  listeners: Listener[] = [];
  #hostSessions = new Map<string, HostSession>();
  #stopSweeper: (() => void) | undefined;
  #stopMaintenance: (() => void) | undefined;
  #trimmer = new MemoryTrimmer();
  #stopping = false;

  private constructor(config: Config, database: Database, options: ServerOptions) {
    this.config = config;
    this.database = database;
    this.storage = new Storage(database);
    // Read per host and from the configuration in force, so a reload applies at once.
    this.accounts = new AccountStore(database, {
      hostIterations: (host) => this.config.hostOption(host, "scram_iterations"),
    });
    this.router = new Router(this);
    // Every routed stanza is counted: look the three counters up once, not per stanza.
    const byKind = {
      message: this.metrics.counter("stanzas.message"),
      presence: this.metrics.counter("stanzas.presence"),
      iq: this.metrics.counter("stanzas.iq"),
    } as Record<string, { inc(): void }>;
    this.router.observe((stanza) => byKind[stanza.name]?.inc());
    this.modules = new ModuleManager(this, options.modules);
    this.throttle = new AuthThrottle(this.#throttleOptions(config));
    this.fastTokens = new FastTokens(database);
  }

  /** Opens storage, prepares hosts and certificates, loads modules and starts listening. */
  static async start(config: Config, options: ServerOptions): Promise<Server> {
    if (options.configureLogging !== false) await configureLogging(config.log);
    await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    const database = Database.open(storageOptions(config.storage));
    const server = new Server(config, database, options);
    try {
      await server.#setUp();
    } catch (error) {
      await server.shutdown("Start-up failed");
      throw error;
    }
    return server;
  }

  #throttleOptions(config: Config) {
    return {
      maxFailures: config.get<number>("auth_throttle_max_failures"),
      addressFailures: config.get<number>("auth_throttle_address_failures"),
      accountFailures: config.get<number>("auth_throttle_account_failures"),
      delayMs: config.get<number>("auth_throttle_delay") * 1000,
      maxDelayMs: config.get<number>("auth_throttle_max_delay") * 1000,
      windowMs: config.get<number>("auth_throttle_window") * 1000,
    };
  }

  async #setUp(): Promise<void> {
    this.loopLag.start();
    const config = this.config;
    const certificates = await this.#loadCertificates(config);
    this.#certificates = certificates;
    this.tls = new TlsContexts(certificates);
    await this.#setUpFederation(config, certificates);
    for (const hostConfig of config.hosts) await this.#addHost(hostConfig.domain, "local");
    for (const component of config.components) {
      await this.#addHost(component.domain, "component");
    }
    if (config.cluster) {
      // Imported only here: a single node never loads the Redis client.
      const { Cluster } = await import("./cluster/cluster.ts");
      this.cluster = await Cluster.start(this, config.cluster);
    }
    for (const address of addresses(config, "c2s_interfaces")) {
      this.listeners.push(await listen("c2s", address, (s) => this.#accept(s, false)));
    }
    for (const address of addresses(config, "c2s_direct_tls_interfaces")) {
      this.listeners.push(await listen("c2s_direct_tls", address, (s) => this.#accept(s, true)));
    }
    const httpsAddresses = addresses(config, "https_interfaces");
    if (httpsAddresses.length > 0) {
      this.httpsTls = new TlsContexts(certificates, { alpn: ["http/1.1"] });
    }
    for (
      const [kind, address] of [
        ...addresses(config, "http_interfaces").map((a) => ["http", a] as const),
        ...httpsAddresses.map((a) => ["https", a] as const),
      ]
    ) {
      this.listeners.push(await listenHttp(this.#httpListenOptions(kind, address)));
    }
    for (const address of addresses(config, "component_interfaces")) {
      this.listeners.push(await listen("component", address, (s) => this.#acceptComponent(s)));
    }
    const remote = this.remote;
    if (remote) {
      for (const address of addresses(config, "s2s_interfaces")) {
        this.listeners.push(await listen("s2s", address, (s) => this.#acceptServer(s, false)));
      }
      for (const address of addresses(config, "s2s_direct_tls_interfaces")) {
        this.listeners.push(
          await listen("s2s_direct_tls", address, (s) => this.#acceptServer(s, true)),
        );
      }
    }
    this.#startSweeper();
    // Closed connections leave freed C heap behind: give it back after many have closed.
    this.sessions.onRemove(() => this.#trimmer.noteClosed());
    // Purges accounts whose deletion grace period is over: at start, then daily.
    this.#stopMaintenance = startAccountMaintenance(this);
    for (const l of this.listeners) {
      log.info("Listening for {kind} on {host}:{port}", {
        kind: l.kind,
        host: l.host,
        port: l.port,
      });
    }
  }

  /**
   * Federation is on when the config has s2s listeners: TLS that asks peers for certificates,
   * the trust store, and the manager.
   */
  async #setUpFederation(config: Config, certificates: TlsHostEntry[]): Promise<void> {
    if (!federationConfigured(config)) return;
    const trust = await loadTrustStore(s2sTrustOptions(config));
    this.s2sTls = new TlsContexts(certificates, { alpn: ["xmpp-server"], requestCert: true });
    this.remote = new S2SManager({
      server: this,
      tls: this.s2sTls,
      trust,
      certificateFor: (local) => this.tls.certificateForName(local),
      defaultSecret: config.cluster ? sharedDialbackSecret(this.database) : undefined,
    });
  }

  #httpListenOptions(kind: "http" | "https", address: ListenAddress): HttpListenOptions {
    // Parsed again only when the option changes (reload), not per request.
    let proxiesText: string[] | undefined;
    let proxies = AddressRanges.parse([]);
    return {
      kind,
      address,
      routes: this.http,
      maxBodyBytes: () => this.config.get<number>("http_max_body_size"),
      defaultHost: () =>
        this.config.get<string>("http_default_host") || this.config.hosts[0]?.domain,
      trustedProxies: () => {
        const text = this.config.get<string[]>("http_trusted_proxies");
        if (text !== proxiesText) {
          proxies = AddressRanges.parse(text);
          proxiesText = text;
        }
        return proxies;
      },
      timeouts: () => ({
        headerMs: this.config.get<number>("http_header_timeout") * 1000,
        idleMs: this.config.get<number>("http_idle_timeout") * 1000,
      }),
      tls: kind === "https" ? this.httpsTls : undefined,
    };
  }

  async #loadCertificates(config: Config): Promise<TlsHostEntry[]> {
    const entries: TlsHostEntry[] = [];
    const whoWontTrust = federationConfigured(config)
      ? "clients, and remote servers that require valid certificates, will not trust it"
      : "clients will not trust it";
    for (const host of config.hosts) {
      const cert = await loadOrCreateCertificate(host.domain, {
        certificate: config.hostOption<string>(host.domain, "certificate") ?? "",
        key: config.hostOption<string>(host.domain, "key") ?? "",
        dataDir: config.dataDir,
      });
      if (cert.generated) {
        log.warn(
          "No certificate configured for {host}: generated a self-signed one in {dir}; " +
            "{who}. Set 'certificate' and 'key' for production",
          { host: host.domain, dir: `${config.dataDir}/certs`, who: whoWontTrust },
        );
      } else if (cert.selfSigned) {
        log.warn("The certificate for {host} is self-signed; {who}", {
          host: host.domain,
          who: whoWontTrust,
        });
      }
      entries.push({ domain: host.domain, cert });
    }
    // A component presents its own certificate when it has one (configured, or imported into
    // data_dir/certs); otherwise SNI picks its parent host's, which a wildcard may cover.
    for (const component of config.components) {
      const files = {
        certificate: config.hostOption<string>(component.domain, "certificate") ?? "",
        key: config.hostOption<string>(component.domain, "key") ?? "",
      };
      const cert = files.certificate !== "" || files.key !== ""
        ? await loadOrCreateCertificate(component.domain, { ...files, dataDir: config.dataDir })
        : await loadStoredCertificate(component.domain, config.dataDir);
      if (cert) entries.push({ domain: component.domain, cert });
    }
    return entries;
  }

  /** The certificates in force: one per host, and one per component that has its own. */
  get certificates(): readonly TlsHostEntry[] {
    return this.#certificates;
  }

  /** The certificate TLS presents for `name` (what SNI picks for it). */
  certificateForName(name: string): LoadedCertificate {
    return this.tls.certificateForName(name);
  }

  /**
   * Reads every certificate again (the configured files, or data_dir/certs) and puts them in
   * force for new TLS handshakes (c2s, HTTPS, s2s); open connections keep theirs. Throws, with
   * nothing changed, when one cannot be loaded. Returns what changed for each host.
   */
  async reloadCertificates(): Promise<CertificateChange[]> {
    return await this.#applyCertificates(await this.#loadCertificates(this.config));
  }

  #applyCertificates(certificates: TlsHostEntry[]): CertificateChange[] {
    const before = new Map(this.#certificates.map((e) => [e.domain, e.cert]));
    this.#certificates = certificates;
    this.tls.update(certificates);
    this.httpsTls?.update(certificates);
    this.s2sTls?.update(certificates);
    const changes: CertificateChange[] = [];
    for (const { domain, cert } of certificates) {
      const old = before.get(domain);
      before.delete(domain);
      const changed = !old || old.certPem !== cert.certPem || old.keyPem !== cert.keyPem;
      changes.push({ domain, before: old, after: cert, changed });
      if (changed) {
        log.info("Certificate for {domain}: {file}, valid until {until}", {
          domain,
          file: cert.certificateFile ?? "(in memory)",
          until: cert.notAfter.toISOString(),
        });
      }
    }
    for (const [domain, old] of before) {
      changes.push({ domain, before: old, after: undefined, changed: true });
    }
    return changes;
  }

  async #addHost(domain: string, kind: "local" | "component"): Promise<void> {
    const host = new Host(domain, kind);
    host.external = this.#isExternal(domain, kind);
    this.hosts.set(domain, host);
    if (kind === "local") {
      // Read at each connection, so a certificate reload reaches WebSocket sessions too.
      const currentTls = () => this.tls;
      const deps = {
        server: this,
        get tls() {
          return currentTls();
        },
        throttle: this.throttle,
        stanzaLimits: this.stanzaLimits,
        fast: this.fastTokens,
      };
      const hostMeta = hostMetaHandlers(() => this.config.get<string>("http_external_url"));
      const bosh = boshHandlers(deps, this.boshSessions);
      const removers = [
        this.http.add(domain, "GET", WEBSOCKET_PATH, websocketHandler(deps)),
        this.http.add(domain, "POST", BOSH_PATH, bosh.post, { maxBodyBytes: bosh.maxBodyBytes }),
        this.http.add(domain, "OPTIONS", BOSH_PATH, bosh.options),
        this.http.add(domain, "GET", BOSH_PATH, bosh.get),
        this.http.add(domain, "GET", "/.well-known/host-meta", hostMeta.xrd),
        this.http.add(domain, "GET", "/.well-known/host-meta.json", hostMeta.json),
      ];
      this.#hostRoutes.set(domain, () => removers.forEach((remove) => remove()));
    }
    for (const name of this.#moduleList(domain, kind)) {
      if (!this.modules.isLoaded(domain, name)) await this.modules.load(host, name);
    }
  }

  /** True for a [[component]] with a `secret` (XEP-0114): served by a connection, not modules. */
  #isExternal(domain: string, kind: "local" | "component"): boolean {
    if (kind !== "component") return false;
    return !!this.config.components.find((c) => c.domain === domain)?.secret;
  }

  /** The modules a host loads: its configured list and what they depend on. */
  #moduleList(domain: string, kind: "local" | "component"): string[] {
    const listed = kind === "component"
      ? this.config.components.find((c) => c.domain === domain)?.modules ?? []
      : this.config.hosts.find((h) => h.domain === domain)?.modules ?? [];
    return this.modules.withDependencies(listed);
  }

  #accept(socket: Socket, directTls: boolean): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    acceptC2S(socket, directTls, {
      server: this,
      tls: this.tls,
      throttle: this.throttle,
      stanzaLimits: this.stanzaLimits,
      fast: this.fastTokens,
    });
  }

  #acceptServer(socket: Socket, directTls: boolean): void {
    if (this.#stopping || !this.remote) {
      socket.destroy();
      return;
    }
    this.remote.accept(socket, directTls);
  }

  #acceptComponent(socket: Socket): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    new ComponentSession(socket, { server: this });
  }

  /**
   * Checks timeouts often enough to honour the shortest one within about a quarter of it
   * (at most every 5 s): one timer for all sessions instead of one per session.
   */
  #startSweeper(): void {
    this.#stopSweeper?.();
    const config = this.config;
    const limits = [config.get<number>("c2s_auth_timeout")];
    for (const host of config.hosts) {
      const idle = config.hostOption<number>(host.domain, "c2s_idle_timeout") ?? 0;
      if (idle > 0) limits.push(idle);
    }
    const everyMs = Math.min(5000, Math.max(250, (Math.min(...limits) * 1000) / 4));
    this.#stopSweeper = this.timers.schedule(everyMs, () => this.#sweepIdle(), {
      owner: "core",
      label: "authentication and idle timeouts",
      repeat: true,
    });
  }

  #sweepIdle(): void {
    const now = Date.now();
    for (const session of this.sessions.all()) {
      if (session instanceof ComponentSession && !session.authenticated) {
        // A component gets as long for its handshake as a client gets for authentication.
        const limit = this.config.get<number>("c2s_auth_timeout") * 1000;
        if (now - session.connectedAt > limit) {
          session.close("connection-timeout", "The handshake took too long");
        }
        continue;
      }
      // A detached session (waiting for stream management resumption) has its own expiry.
      if (!(session instanceof C2SSession) || !session.transport) continue;
      if (!session.authenticated) {
        const limit = this.config.get<number>("c2s_auth_timeout") * 1000;
        if (now - session.connectedAt > limit) {
          session.close("connection-timeout", "Authentication took too long");
        }
        continue;
      }
      const idle = (this.config.hostOption<number>(session.host, "c2s_idle_timeout") ?? 0) * 1000;
      if (idle > 0 && now - session.lastActivity > idle) {
        session.close("connection-timeout", "The connection was idle too long");
      }
    }
  }

  /** Routes a stanza (see Router). */
  route(stanza: Element, origin: Session): void {
    this.router.route(stanza, origin);
  }

  /** The internal origin session of a host. */
  hostSession(domain: string): Session {
    let session = this.#hostSessions.get(domain);
    if (!session) {
      session = new HostSession(domain, (stanza, origin) => this.route(stanza, origin));
      this.#hostSessions.set(domain, session);
    }
    return session;
  }

  /**
   * Applies a new configuration: every changed option the schema marks "live" (logging,
   * limits, certificates, per-host module lists and options, hosts added or removed), then
   * `config-reloaded` on every host. Options marked "restart" (listeners, data_dir, storage,
   * ...) keep their running values; the report lists them.
   */
  async reload(next: Config): Promise<ReloadReport> {
    const running = this.config;
    const changes = configChanges(running, next, this.modules.declaredOptions());
    const needRestart = changes.filter((c) => c.reload === "restart");
    const config = needRestart.length === 0
      ? next
      : next.keeping(running, needRestart.map((c) => c.option));
    this.config = config;
    await configureLogging(config.log);
    this.throttle.configure(this.#throttleOptions(config));
    this.#applyCertificates(await this.#loadCertificates(config));
    if (this.remote) {
      this.remote.reconfigure(config);
      try {
        this.remote.setTrust(await loadTrustStore(s2sTrustOptions(config)));
      } catch (error) {
        log.error("Keeping the previous s2s trust store: {error}", {
          error: (error as Error).message,
        });
      }
    }
    this.#startSweeper();
    const wanted = new Map<string, "local" | "component">();
    for (const h of config.hosts) wanted.set(h.domain, "local");
    for (const c of config.components) wanted.set(c.domain, "component");
    for (const [domain, host] of [...this.hosts]) {
      if (wanted.get(domain) !== host.kind) {
        this.modules.unloadAll(host);
        this.hosts.delete(domain);
        this.#hostRoutes.get(domain)?.();
        this.#hostRoutes.delete(domain);
        for (const s of this.sessions.all()) {
          if (s.host === domain) s.close("host-gone", "This host was removed");
        }
        log.info("Removed host {host}", { host: domain });
      }
    }
    for (const [domain, kind] of wanted) {
      const host = this.hosts.get(domain);
      if (!host) {
        await this.#addHost(domain, kind);
        log.info("Added host {host}", { host: domain });
        continue;
      }
      host.external = this.#isExternal(domain, kind);
      if (!host.external && host.connection) {
        host.connection.close("host-gone", "This domain is no longer an external component");
      }
      const list = this.#moduleList(domain, kind);
      for (const name of this.modules.loaded(domain)) {
        if (!list.includes(name)) this.modules.unload(host, name, { cascade: true });
      }
      for (const name of list) {
        if (this.modules.isLoaded(domain, name)) continue;
        try {
          await this.modules.load(host, name);
        } catch (error) {
          log.error("Cannot load module {module} on {host}: {error}", {
            module: name,
            host: domain,
            error: (error as Error).message,
          });
        }
      }
    }
    // Streams hold a few options (their stanza size limit): they take up the new values.
    for (const session of this.sessions.all()) session.applyConfig?.();
    const modules: ModuleReloadOutcome[] = [];
    for (const host of this.hosts.values()) modules.push(...await this.modules.applyConfig(host));
    const applied = changes.filter((c) => c.reload === "live");
    for (const host of this.hosts.values()) {
      const changed = applied.filter((c) => c.host === undefined || c.host === host.domain)
        .map((c) => c.option);
      host.events.fire("config-reloaded", { host, changed: [...new Set(changed)] });
    }
    for (const change of needRestart) {
      log.warn("{option} changed: restart the server to apply it (the running value stays)", {
        option: describeChange(change, config.file),
      });
    }
    log.info("Configuration reloaded from {file}", { file: config.file });
    return { applied, needRestart, modules };
  }

  /**
   * Stops accepting, closes every stream with `system-shutdown` (or the given condition),
   * unloads modules and closes storage.
   */
  async shutdown(
    reason = "The server is shutting down",
    condition: StreamErrorCondition = "system-shutdown",
  ): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#stopSweeper?.();
    this.remote?.shutdown();
    // Stopping the HTTP listeners cuts the requests BOSH sessions hold: answer those first.
    if (this.boshSessions.size > 0) {
      this.boshSessions.closeAll(condition, reason);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // A listener's close completes only once its connections are gone: close those too.
    const closing = Promise.all(this.listeners.map((l) => l.close()));
    this.listeners = [];
    const sessions = this.sessions.all().filter((s) => s.kind !== "internal");
    for (const session of sessions) session.close(condition, reason);
    if (sessions.length > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    for (const session of sessions) session.destroy?.();
    // After this node's sessions ended (announced to the others), before storage closes.
    await this.cluster?.stop();
    // BOSH sessions whose stream already ended may still hold requests or a pending answer.
    this.boshSessions.destroyAll();
    await closing;
    for (const host of this.hosts.values()) this.modules.unloadAll(host);
    this.#stopMaintenance?.();
    this.#trimmer.stop();
    this.loopLag.stop();
    this.accounts.flushActivity();
    this.database.close();
    log.info("Server stopped");
  }

  /** The bound port of the first listener of a kind (tests listen on port 0). */
  port(
    kind: "c2s" | "c2s_direct_tls" | "component" | "s2s" | "s2s_direct_tls" | "http" | "https",
  ): number {
    const listener = this.listeners.find((l) => l.kind === kind);
    if (!listener) throw new Error(`No ${kind} listener is configured`);
    return listener.port;
  }
}
