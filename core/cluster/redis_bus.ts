// The cluster's two connections to Redis (scripts/bench/broker.ts measured it against NATS): one
// for commands and publishing, in order, and one subscribed to this node's channels. The only
// file that imports the Redis client, loaded only when the configuration has a [cluster] table.

import { createClient } from "@redis/client";
import { getLogger } from "../log.ts";

const log = getLogger(["cluster", "redis"]);

/** How to reach Redis and what to listen to. */
export interface RedisBusOptions {
  /** redis://host:port/db (no password in it). */
  url: string;
  /** The password, or "" for none. */
  password: string;
  /** Channels to subscribe to. */
  channels: string[];
  /** Called for each message of those channels, in the order Redis delivers them. */
  onMessage(channel: string, text: string): void;
  /** Called when the subscription is made again after a lost connection (messages missed). */
  onResubscribed(): void;
  /** Gives up connecting after this long (ms). */
  connectTimeoutMs: number;
}

/** The command connection, which keeps trying after a lost connection (Redis restarted). */
function newClient(url: string, password: string, connectTimeoutMs: number) {
  return createClient({
    url,
    ...(password === "" ? {} : { password }),
    socket: {
      connectTimeout: connectTimeoutMs,
      reconnectStrategy: (retries: number) => Math.min(50 * (retries + 1), 1000),
    },
  });
}

type Client = ReturnType<typeof newClient>;
/** All the bus does with the subscribed connection once it listens. */
type Subscriber = { close(): Promise<unknown>; destroy(): void };

/** Publishing, the registry commands the cluster uses, and a subscription. */
export class RedisBus {
  #client: Client;
  #subscriber: Subscriber;
  #url: string;

  private constructor(client: Client, subscriber: Subscriber, url: string) {
    this.#client = client;
    this.#subscriber = subscriber;
    this.#url = url;
  }

  /** Connects both connections and subscribes; throws when Redis cannot be reached in time. */
  static async connect(options: RedisBusOptions): Promise<RedisBus> {
    const client = newClient(options.url, options.password, options.connectTimeoutMs);
    let reported = "";
    const onError = (error: Error) => {
      // One line per distinct failure, not one per reconnection attempt.
      if (error.message === reported) return;
      reported = error.message;
      log.warn("Redis at {url}: {error}", { url: options.url, error: error.message });
    };
    client.on("error", onError);
    client.on("ready", () => (reported = ""));
    const subscriber = client.duplicate();
    subscriber.on("error", onError);
    let subscribed = false;
    subscriber.on("ready", () => {
      // The client subscribes again by itself on reconnection; what came meanwhile is lost.
      if (subscribed) queueMicrotask(() => options.onResubscribed());
    });
    const connecting = (async () => {
      await client.connect();
      await subscriber.connect();
      await subscriber.subscribe(options.channels, (message: string, channel: string) => {
        options.onMessage(channel, message);
      });
      subscribed = true;
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Cannot reach Redis at ${options.url} (cluster.redis_url)`)),
        options.connectTimeoutMs,
      );
    });
    try {
      await Promise.race([connecting, timeout]);
    } catch (error) {
      connecting.catch(() => {});
      client.destroy();
      subscriber.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return new RedisBus(client, subscriber, options.url);
  }

  /** Publishes without waiting; a failure is logged. */
  publish(channel: string, text: string): void {
    this.#client.publish(channel, text).catch((error: Error) => this.#failed("PUBLISH", error));
  }

  /** SET key value PX ttlMs. */
  async setWithTtl(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#client.set(key, value, { PX: Math.ceil(ttlMs) });
  }

  /** GET key (null when missing). */
  async get(key: string): Promise<string | null> {
    return await this.#client.get(key);
  }

  /** Keys matching a pattern (a handful: one per node). */
  async keys(pattern: string): Promise<string[]> {
    return await this.#client.keys(pattern);
  }

  /** HSET without waiting. */
  hashSet(key: string, field: string, value: string): void {
    this.#client.hSet(key, field, value).catch((error: Error) => this.#failed("HSET", error));
  }

  /** HSET of many fields, waited for. */
  async hashSetAll(key: string, entries: Record<string, string>): Promise<void> {
    if (Object.keys(entries).length > 0) await this.#client.hSet(key, entries);
  }

  /** HDEL without waiting. */
  hashDelete(key: string, field: string): void {
    this.#client.hDel(key, field).catch((error: Error) => this.#failed("HDEL", error));
  }

  /** HGETALL. */
  async hashGetAll(key: string): Promise<Record<string, string>> {
    return { ...await this.#client.hGetAll(key) };
  }

  /** PEXPIRE; false when the key does not exist. */
  async expire(key: string, ttlMs: number): Promise<boolean> {
    return (await this.#client.pExpire(key, Math.ceil(ttlMs))) === 1;
  }

  /** DEL. */
  async delete(...keys: string[]): Promise<void> {
    await this.#client.del(keys);
  }

  /**
   * Waits for what was sent before (at most `waitMs`: Redis may be out of reach), then closes
   * both connections.
   */
  async close(waitMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), waitMs);
    });
    const closing = Promise.all([
      this.#subscriber.close().catch(() => {}),
      this.#client.close().catch(() => {}),
    ]);
    const outcome = await Promise.race([closing, gaveUp]);
    clearTimeout(timer);
    if (outcome === "late") {
      this.#subscriber.destroy();
      this.#client.destroy();
    }
  }

  #failed(command: string, error: Error): void {
    log.warn("Redis {command} at {url} failed: {error}", {
      command,
      url: this.#url,
      error: error.message,
    });
  }
}
