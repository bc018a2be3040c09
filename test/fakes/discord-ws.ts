import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";

/**
 * A minimal RFC 6455 server side for the fake Discord gateway. discord.js reaches the gateway through the `ws`
 * package, which is only a transitive dependency here, so the fake speaks the protocol itself: masked client
 * frames, fragmentation, ping/pong and the close handshake. permessage-deflate is never negotiated (the client's
 * offer is ignored, which RFC 7692 allows), so every frame the fake sends is a plain text frame, as Discord's
 * uncompressed JSON gateway sends them.
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export interface WsHandlers {
  onText(text: string): void;
  /** Binary frames: the JSON gateway treats them as a decode error. */
  onBinary(bytes: Buffer): void;
  /** The connection is gone; `code` is the client's close code, or 1006 when it vanished without one. */
  onClose(code: number, reason: string): void;
}

/** Completes the opening handshake, or answers with an HTTP error and returns null. */
export function acceptUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  handlers: WsHandlers,
): WsConnection | null {
  const key = req.headers["sec-websocket-key"];
  if (
    req.method !== "GET" ||
    req.headers.upgrade?.toLowerCase() !== "websocket" ||
    typeof key !== "string" ||
    req.headers["sec-websocket-version"] !== "13"
  ) {
    rejectUpgrade(socket, "400 Bad Request");
    return null;
  }
  const accept = createHash("sha1").update(`${key}${GUID}`).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  const connection = new WsConnection(socket, handlers);
  if (head.length > 0) connection.receive(head);
  return connection;
}

export function rejectUpgrade(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

export class WsConnection {
  readonly #socket: Duplex;
  readonly #handlers: WsHandlers;
  #buffer: Buffer = Buffer.alloc(0);
  #fragments: Buffer[] = [];
  #fragmentOpcode = 0;
  #closeSent = false;
  #closed = false;

  constructor(socket: Duplex, handlers: WsHandlers) {
    this.#socket = socket;
    this.#handlers = handlers;
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("error", () => {});
    // The client's FIN (a process that died, or the end of its close handshake): the upgraded socket is
    // half-open, so end our side too, or a dead client would count as connected until the next write.
    socket.on("end", () => socket.end());
    socket.on("close", () => this.#finish(1006, ""));
  }

  get open(): boolean {
    return !this.#closeSent && !this.#closed && !this.#socket.destroyed;
  }

  sendText(text: string): void {
    this.#send(0x1, Buffer.from(text, "utf8"));
  }

  /** Starts the close handshake; the socket ends once the client answers (or after a second). */
  close(code: number, reason = ""): void {
    if (this.#closeSent || this.#closed) return;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.#send(0x8, payload);
    this.#closeSent = true;
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  /** Drops the TCP connection without a close frame, like a network failure (the client sees 1006). */
  destroy(): void {
    this.#socket.destroy();
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
      // Clients must mask every frame (RFC 6455 5.1) and may not set RSV bits without a negotiated extension.
      if ((b1 & 0x80) === 0 || (b0 & 0x70) !== 0) {
        this.#protocolError("protocol error");
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

  #protocolError(reason: string): void {
    this.close(1002, reason);
    this.#buffer = Buffer.alloc(0);
  }

  #frame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode >= 0x8 && (!fin || payload.length > 125)) {
      this.#protocolError("bad control frame");
      return;
    }
    switch (opcode) {
      case 0x8: {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        const reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
        // Echo the close (RFC 6455 5.5.1), then report it: the client's code decides whether a session survives.
        if (!this.#closeSent) {
          const echo = payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0);
          this.#send(0x8, echo);
          this.#closeSent = true;
        }
        this.#finish(code, reason);
        this.#socket.end();
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
          this.#protocolError("expected continuation");
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
          this.#protocolError("unexpected continuation");
          return;
        }
        this.#fragments.push(payload);
        if (!fin) return;
        this.#message(this.#fragmentOpcode, Buffer.concat(this.#fragments));
        this.#fragments = [];
        return;
      default: {
        this.#protocolError("unknown opcode");
        return;
      }
    }
  }

  #message(opcode: number, payload: Buffer): void {
    if (this.#closed || this.#closeSent) return;
    if (opcode === 0x1) this.#handlers.onText(payload.toString("utf8"));
    else this.#handlers.onBinary(payload);
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.onClose(code, reason);
  }

  #send(opcode: number, payload: Buffer): void {
    if (this.#closeSent || this.#closed || this.#socket.destroyed) return;
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
