// The admin channel's wire format, shared by the socket server (admin_socket.ts) and the
// `lilt shell` client: newline-delimited JSON requests, replies and streamed events.

import type { ArgSpec, CommandResult } from "../core/admin_commands.ts";

/** A request id: chosen by the client, echoed in every reply and event for that request. */
export type RequestId = number | string;

/**
 * One request line. `cmd` is "SECTION NAME" (e.g. "user create") or one of the special
 * commands "commands", "complete", "help" and "cancel".
 */
export interface AdminRequest {
  id: RequestId;
  cmd: string;
  args: string[];
  /**
   * The client forwards its standard input for this request (an argument `-` of a command
   * that reads input): `AdminInput` lines with the same id follow, the last with `input: null`.
   */
  input?: boolean;
}

/**
 * A piece of the client's standard input for the request `id`, sent after that request;
 * `input: null` marks the end. The server cannot read the caller's stdin itself.
 */
export interface AdminInput {
  id: RequestId;
  input: string | null;
}

/** The final answer to a request that succeeded. */
export interface AdminOkReply {
  id: RequestId;
  ok: true;
  result: CommandResult;
}

/** The final answer to a request that failed: a one-line message, never a stack. */
export interface AdminErrorReply {
  /** null when the request line was too malformed to carry an id. */
  id: RequestId | null;
  ok: false;
  error: string;
}

/** One event of a streaming command, sent before its final reply. */
export interface AdminEvent {
  id: RequestId;
  event: unknown;
}

/** Any line the server sends. */
export type AdminMessage = AdminOkReply | AdminErrorReply | AdminEvent;

/** A final reply (success or failure). */
export type AdminReply = AdminOkReply | AdminErrorReply;

/** A command as the "commands" request lists it (the spec without its `run`). */
export interface CommandInfo {
  section: string;
  name: string;
  summary: string;
  args: ArgSpec[];
  stream?: boolean;
}

/** Argument kinds the "complete" request knows candidates for. */
export const COMPLETABLE_KINDS = ["jid", "host", "role", "module", "level"] as const;

/** Longest request line the server accepts; a longer one gets an error and the connection closes. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** Most standard input one request may forward, in characters (all its pieces together). */
export const MAX_INPUT_CHARS = 32 * 1024 * 1024;

/** Longest piece of input a client puts in one `AdminInput` line (in UTF-16 code units). */
export const INPUT_PIECE_CHARS = 64 * 1024;

/** True when a server line is an event rather than a final reply. */
export function isEvent(message: AdminMessage): message is AdminEvent {
  return "event" in message && !("ok" in message);
}

/** The usage line of a command: `user create <jid> [role]`. */
export function usage(info: CommandInfo): string {
  const args = info.args.map((a) => {
    const name = a.rest ? `${a.name}...` : a.name;
    return a.optional ? `[${name}]` : `<${name}>`;
  });
  return [info.section, info.name, ...args].join(" ");
}
