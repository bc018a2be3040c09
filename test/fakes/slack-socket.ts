import { createHash, randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { AckRecord, SlackState } from "./slack-state.ts";

/**
 * Socket Mode (reference/protocols.md B3) on a minimal RFC 6455 server: `apps.connections.open` hands out a
 * one-use `ws://…/link/?ticket=…` URL; the connection gets `hello`, then envelopes; the client's acks
 * (`{ envelope_id, payload }`) are matched, timed and judged by the 3-second rule. Text frames, fragmentation,
 * ping/pong and the close handshake are handled; compression is never negotiated. The `ws` package is not
 * installed, and @slack/socket-mode 3 speaks through undici's WebSocket client, which this serves.
 */

export type EnvelopeType = "events_api" | "slash_commands" | "interactive";

export interface SocketEnvelope {
  envelope_id: string;
  type: EnvelopeType;
  payload: Record<string, unknown>;
  accepts_response_payload: boolean;
  retry_attempt?: number;
  retry_reason?: string;
}

export interface SocketSendOptions {
  retryAttempt?: number;
  retryReason?: string;
  ackTimeoutMs?: number;
}

export interface FakeSocketMode {
  /** Open connections that have been sent `hello`. */
  readonly connections: number;
  /** Everything sent to clients, in order. */
  envelopes: SocketEnvelope[];
  /** Client messages that were not a valid ack of a pending envelope. */
  unexpected: unknown[];
  waitForConnection(timeoutMs?: number): Promise<void>;
  /** Sends an envelope to the newest connection; resolves with the ack (or the missed deadline). */
  send(type: EnvelopeType, payload: Record<string, unknown>, options?: SocketSendOptions): Promise<AckRecord>;
  /** `{"type":"disconnect","reason":…}`: the client closes and reconnects through apps.connections.open. */
  disconnect(reason?: string): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export function createSocketMode(state: SlackState): FakeSocketMode {
  const open: WsConnection[] = [];
  const waiters = new Set<() => void>();
  const pending = new Map<
    string,
    { started: number; deadline: number; record: AckRecord; done: () => void }
  >();
  const envelopes: SocketEnvelope[] = [];
  const unexpected: unknown[] = [];

  const onText = (text: string) => {
    let message: { envelope_id?: unknown; payload?: unknown };
    try {
      message = JSON.parse(text);
    } catch {
      unexpected.push(text);
      return;
    }
    const entry = typeof message.envelope_id === "string" ? pending.get(message.envelope_id) : undefined;
    if (!entry) {
      unexpected.push(message);
      return;
    }
    pending.delete(message.envelope_id as string);
    const latency = performance.now() - entry.started;
    entry.record.latencyMs = latency;
    entry.record.body = message.payload ?? {};
    if (latency <= entry.deadline) {
      entry.record.ok = true;
      delete entry.record.reason;
    }
    entry.done();
  };

  return {
    get connections() {
      return open.length;
    },
    envelopes,
    unexpected,
    waitForConnection(timeoutMs = 5000) {
      if (open.length > 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`fake Slack: no Socket Mode connection within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = () => {
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve();
        };
        waiters.add(waiter);
      });
    },
    send(type, payload, options = {}) {
      const connection = open.at(-1);
      if (!connection) return Promise.reject(new Error("fake Slack: no Socket Mode connection to send to"));
      const envelope: SocketEnvelope = {
        envelope_id: randomUUID(),
        type,
        payload,
        accepts_response_payload:
          type === "slash_commands" ||
          (type === "interactive" && ["view_submission", "block_suggestion"].includes(String(payload.type))),
        ...(type === "events_api"
          ? { retry_attempt: options.retryAttempt ?? 0, retry_reason: options.retryReason ?? "" }
          : {}),
      };
      envelopes.push(envelope);
      const deadline = options.ackTimeoutMs ?? state.ackTimeoutMs;
      const record: AckRecord = {
        transport: "socket",
        kind: type === "events_api" ? "event" : type === "slash_commands" ? "slash_command" : "interaction",
        id: envelope.envelope_id,
        latencyMs: null,
        status: null,
        body: undefined,
        ok: false,
        reason: type === "events_api" ? "timeout" : "operation_timeout",
        pending: true,
      };
      state.acks.push(record);
      return new Promise((resolve) => {
        // A late ack still updates the record's latency, but the delivery stays failed.
        const timer = setTimeout(() => {
          delete record.pending;
          resolve(record);
        }, deadline);
        const started = performance.now();
        pending.set(envelope.envelope_id, {
          started,
          deadline,
          record,
          done: () => {
            delete record.pending;
            clearTimeout(timer);
            resolve(record);
          },
        });
        connection.sendText(JSON.stringify(envelope));
      });
    },
    disconnect(reason = "refresh_requested") {
      for (const connection of open)
        connection.sendText(
          JSON.stringify({ type: "disconnect", reason, debug_info: { host: "applink-fake" } }),
        );
    },
    handleUpgrade(req, socket, head) {
      const url = new URL(req.url ?? "/", "http://fake");
      const key = req.headers["sec-websocket-key"];
      const reject = (status: string) => {
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      };
      if (url.pathname !== "/link/" && url.pathname !== "/link") return reject("404 Not Found");
      if (
        req.headers.upgrade?.toLowerCase() !== "websocket" ||
        !key ||
        req.headers["sec-websocket-version"] !== "13"
      )
        return reject("400 Bad Request");
      const ticket = url.searchParams.get("ticket") ?? "";
      if (!state.socketTickets.delete(ticket)) return reject("401 Unauthorized");
      const accept = createHash("sha1").update(`${key}${GUID}`).digest("base64");
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      const connection = new WsConnection(socket, onText, () => {
        const index = open.indexOf(connection);
        if (index >= 0) open.splice(index, 1);
      });
      if (head.length > 0) connection.receive(head);
      open.push(connection);
      connection.sendText(
        JSON.stringify({
          type: "hello",
          num_connections: open.length,
          debug_info: { host: "applink-fake", build_number: 1, approximate_connection_time: 18060 },
          connection_info: { app_id: state.appId },
        }),
      );
      for (const waiter of [...waiters]) waiter();
    },
    close() {
      for (const connection of [...open]) connection.close(1001, "server shutting down", true);
      for (const entry of pending.values()) entry.done();
      pending.clear();
    },
  };
}

/** One server-side WebSocket: unmasks client frames, answers pings and closes, sends unmasked text frames. */
class WsConnection {
  readonly #socket: Duplex;
  readonly #onText: (text: string) => void;
  readonly #onClose: () => void;
  #buffer: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentOpcode = 0;
  #closing = false;

  constructor(socket: Duplex, onText: (text: string) => void, onClose: () => void) {
    this.#socket = socket;
    this.#onText = onText;
    this.#onClose = onClose;
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => {});
    socket.on("close", () => {
      this.#closing = true;
      this.#onClose();
    });
  }

  sendText(text: string): void {
    this.#send(0x1, Buffer.from(text, "utf8"));
  }

  close(code: number, reason = "", destroy = false): void {
    if (this.#closing) return;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.#send(0x8, payload);
    this.#closing = true;
    this.#onClose();
    this.#socket.end();
    if (destroy) this.#socket.destroy();
    else setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  receive(chunk: Buffer): void {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    while (this.#buffer.length >= 2) {
      const b0 = this.#buffer[0] ?? 0;
      const b1 = this.#buffer[1] ?? 0;
      let length = b1 & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.#buffer.length < 4) return;
        length = this.#buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.#buffer.length < 10) return;
        length = Number(this.#buffer.readBigUInt64BE(2));
        offset = 10;
      }
      // Clients must mask every frame (RFC 6455 5.1) and may not set RSV bits without an extension.
      if ((b1 & 0x80) === 0 || (b0 & 0x70) !== 0) {
        this.close(1002, "protocol error");
        return;
      }
      if (this.#buffer.length < offset + 4 + length) return;
      const mask = this.#buffer.subarray(offset, offset + 4);
      const payload = Buffer.from(this.#buffer.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
      this.#buffer = this.#buffer.subarray(offset + 4 + length);
      this.#frame((b0 & 0x80) !== 0, b0 & 0x0f, payload);
    }
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode >= 0x8 && (!fin || payload.length > 125)) {
      this.close(1002, "bad control frame");
      return;
    }
    switch (opcode) {
      case 0x8: // close: echo the code, then end
        {
          this.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
          return;
        }
      case 0x9: {
        this.#send(0xa, payload);
        return;
      }
      case 0xa:
        return;
      case 0x1:
      case 0x2:
        if (this.#fragments.length > 0) {
          this.close(1002, "expected continuation");
          return;
        }
        if (fin) {
          this.#message(opcode, payload);
          return;
        }
        this.#fragmentOpcode = opcode;
        this.#fragments = [payload];
        return;
      case 0x0:
        if (this.#fragments.length === 0) {
          this.close(1002, "unexpected continuation");
          return;
        }
        this.#fragments.push(payload);
        if (!fin) return;
        this.#message(this.#fragmentOpcode, Buffer.concat(this.#fragments));
        this.#fragments = [];
        return;
      default: {
        this.close(1002, "unknown opcode");
        return;
      }
    }
  }

  #message(opcode: number, payload: Buffer): void {
    if (opcode === 0x1) this.#onText(payload.toString("utf8")); // binary frames are ignored, as Slack's client does
  }

  #send(opcode: number, payload: Buffer): void {
    if (this.#closing || this.#socket.destroyed) return;
    const length = payload.length;
    const header = Buffer.alloc(length < 126 ? 2 : length < 65536 ? 4 : 10);
    header[0] = 0x80 | opcode;
    if (length < 126) header[1] = length;
    else if (length < 65536) {
      header[1] = 126;
      header.writeUInt16BE(length, 2);
    } else {
      header[1] = 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    this.#socket.write(Buffer.concat([header, payload]));
  }
}
