import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { channelJson, guildJson, memberJson, userJson } from "./discord-objects.ts";
import { changed, channelPermissions, type DiscordState, Intent, now, Permission } from "./discord-state.ts";
import { acceptUpgrade, rejectUpgrade, type WsConnection } from "./discord-ws.ts";

/**
 * The gateway (reference/protocols.md A2, A3): `ws://127.0.0.1:PORT/?v=10&encoding=json`, uncompressed JSON text
 * frames. HELLO, heartbeats answered with ACKs, IDENTIFY checked (token, intents, shard) → READY → GUILD_CREATE,
 * then dispatches with sequence numbers, filtered by intents (MESSAGE_* need GuildMessages; without the privileged
 * MessageContent intent, message content is emptied as Discord does). Sessions keep every dispatch so RESUME
 * replays what the client missed, then RESUMED. Tests can send op 7 RECONNECT, op 9 INVALID_SESSION, drop the
 * TCP connection or close with a code. Discord's close codes are used for protocol errors (4001–4014).
 */

/** Every intent bit Discord defines (discord-api-types GatewayIntentBits). */
const KNOWN_INTENTS = 0x1ffff | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);
export const PRIVILEGED_INTENTS = Intent.GuildMembers | Intent.GuildPresences | Intent.MessageContent;

/** The intent a dispatch needs; events not listed are sent regardless (READY, INTERACTION_CREATE, …). */
const EVENT_INTENTS: Record<string, number> = {
  GUILD_CREATE: Intent.Guilds,
  GUILD_UPDATE: Intent.Guilds,
  GUILD_DELETE: Intent.Guilds,
  CHANNEL_CREATE: Intent.Guilds,
  CHANNEL_UPDATE: Intent.Guilds,
  CHANNEL_DELETE: Intent.Guilds,
  THREAD_CREATE: Intent.Guilds,
  THREAD_UPDATE: Intent.Guilds,
  THREAD_DELETE: Intent.Guilds,
  THREAD_LIST_SYNC: Intent.Guilds,
  MESSAGE_CREATE: Intent.GuildMessages,
  MESSAGE_UPDATE: Intent.GuildMessages,
  MESSAGE_DELETE: Intent.GuildMessages,
  MESSAGE_REACTION_ADD: 1 << 10,
  MESSAGE_REACTION_REMOVE: 1 << 10,
};

export interface GatewayPayload {
  op: number;
  d: unknown;
  s: number | null;
  t: string | null;
}

interface Session {
  id: string;
  seq: number;
  intents: number;
  /** Every dispatch of the session, for RESUME. */
  history: GatewayPayload[];
  connection: Connection | null;
  /** Invalidated sessions cannot be resumed (client closed with 1000/1001, or a test invalidated it). */
  invalid: boolean;
  /** `[shard id, shard count]` from IDENTIFY; `[0, 1]` when it named none. */
  shard: [number, number];
}

interface Connection {
  id: number;
  ws: WsConnection;
  session: Session | null;
  /** Payloads sent to this connection, in order. */
  sent: GatewayPayload[];
}

export interface IdentifyRecord {
  at: number;
  connection: number;
  intents: number;
  shard: unknown;
  compress: unknown;
  properties: unknown;
  largeThreshold: unknown;
  /** The close code if the identify was refused. */
  refused?: number;
}

export interface ResumeRecord {
  at: number;
  connection: number;
  sessionId: string;
  seq: number;
  /** How many missed dispatches were replayed; null when the session could not be resumed. */
  replayed: number | null;
}

export interface GatewayOptions {
  heartbeatIntervalMs: number;
  /** Privileged intents enabled for the app (in Discord's developer portal); IDENTIFY with others gets 4014. */
  privilegedIntents: number;
}

export interface FakeGateway {
  /** `ws://127.0.0.1:PORT`, as `/gateway/bot` answers. */
  readonly url: string;
  /** Open connections. */
  readonly connections: number;
  identifies: IdentifyRecord[];
  resumes: ResumeRecord[];
  /** Every payload received from clients (tokens redacted). */
  received: GatewayPayload[];
  /** Every close: who closed and with which code. */
  closes: Array<{ connection: number; code: number; by: "client" | "server" }>;
  readonly heartbeats: number;
  /** The newest session's id and last sequence number. */
  readonly session: { id: string; seq: number; intents: number; resumable: boolean } | null;
  /** Sends op 7 RECONNECT: discord.js closes with 4200 and RESUMEs on `resume_gateway_url`. */
  requestReconnect(): void;
  /** Drops every TCP connection without a close frame (the client sees 1006 and RESUMEs). */
  dropConnections(): void;
  /** Closes every connection with a code (4000 → resume, 1000/4003… → new IDENTIFY, 4004… → fatal). */
  closeConnections(code: number, reason?: string): void;
  /** Sends op 9 INVALID_SESSION; with `resumable: false` the session is gone and the client IDENTIFYs again. */
  invalidateSession(resumable: boolean): void;
  /** Sends a raw dispatch to every session that has the intent for it. */
  dispatch(event: string, data: Record<string, unknown>): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

export function createGateway(state: DiscordState, options: GatewayOptions): FakeGateway {
  const sessions = new Map<string, Session>();
  const open = new Set<Connection>();
  const identifies: IdentifyRecord[] = [];
  const resumes: ResumeRecord[] = [];
  const received: GatewayPayload[] = [];
  const closes: FakeGateway["closes"] = [];
  let heartbeats = 0;
  let connectionIds = 0;
  let newest: Session | null = null;

  const send = (connection: Connection, payload: GatewayPayload) => {
    connection.sent.push(payload);
    connection.ws.sendText(JSON.stringify(payload));
  };
  const serverClose = (connection: Connection, code: number, reason: string) => {
    closes.push({ connection: connection.id, code, by: "server" });
    connection.ws.close(code, reason);
    detach(connection);
  };
  const detach = (connection: Connection) => {
    open.delete(connection);
    if (connection.session?.connection === connection) connection.session.connection = null;
  };

  /** The copy of a dispatch one session gets: nothing without the intent, no message content without MessageContent. */
  const forSession = (session: Session, event: string, data: Record<string, unknown>) => {
    const needed = EVENT_INTENTS[event];
    if (needed !== undefined && !(session.intents & needed)) return null;
    if (!event.startsWith("MESSAGE_") || session.intents & Intent.MessageContent) return data;
    const author = (data.author as { id?: string } | undefined)?.id;
    const mentioned =
      Array.isArray(data.mentions) && data.mentions.some((u: { id?: string }) => u.id === state.bot.id);
    if (author === state.bot.id || mentioned || !("content" in data)) return data;
    return { ...data, content: "", embeds: [], attachments: [], components: [] };
  };

  const dispatchTo = (session: Session, event: string, data: unknown) => {
    const payload: GatewayPayload = { op: 0, t: event, s: ++session.seq, d: data };
    session.history.push(payload);
    const connection = session.connection;
    if (connection?.ws.open) send(connection, payload);
  };

  /** Whether a session's shard gets a server's events: Discord routes by `(guild_id >> 22) % shard count`. */
  const owns = (session: Session, guildId: string) =>
    Number((BigInt(guildId) >> 22n) % BigInt(session.shard[1])) === session.shard[0];
  /** The server an event belongs to; DMs and the like go to shard 0. */
  const guildOf = (event: string, data: Record<string, unknown>) =>
    String(data.guild_id ?? (event.startsWith("GUILD_") ? (data.id ?? "0") : "0"));

  const dispatch = (event: string, data: Record<string, unknown>) => {
    const guildId = guildOf(event, data);
    for (const session of sessions.values()) {
      if (session.invalid) continue;
      if (!owns(session, guildId)) continue;
      const copy = forSession(session, event, data);
      if (copy) dispatchTo(session, event, structuredClone(copy));
    }
    changed(state);
  };

  const guildCreate = (intents: number) => {
    const threads = [...state.channels.values()].filter(
      (c) =>
        c.parentId && !c.archived && channelPermissions(state, state.bot.id, c.id) & Permission.ViewChannel,
    );
    const members = [...state.memberRoles.keys()].filter(
      (id) => id === state.bot.id || intents & Intent.GuildPresences,
    );
    return {
      ...guildJson(state),
      joined_at: "2026-01-01T00:00:00.000000+00:00",
      large: false,
      unavailable: false,
      member_count: state.memberRoles.size,
      voice_states: [],
      members: members.map((id) => memberJson(state, id, true)),
      channels: [...state.channels.values()].filter((c) => !c.parentId).map((c) => channelJson(state, c)),
      threads: threads.map((c) => channelJson(state, c)),
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
      lazy: true,
    };
  };

  const identify = (connection: Connection, d: Record<string, unknown>) => {
    const record: IdentifyRecord = {
      at: now(state),
      connection: connection.id,
      intents: d.intents as number,
      shard: d.shard,
      compress: d.compress,
      properties: d.properties,
      largeThreshold: d.large_threshold,
    };
    identifies.push(record);
    const refuse = (code: number, reason: string) => {
      record.refused = code;
      serverClose(connection, code, reason);
    };
    if (d.token !== state.botToken) return refuse(4004, "Authentication failed.");
    const intents = d.intents;
    if (typeof intents !== "number" || !Number.isInteger(intents) || intents < 0 || intents & ~KNOWN_INTENTS)
      return refuse(4013, "Invalid intent(s).");
    if (intents & PRIVILEGED_INTENTS & ~options.privilegedIntents)
      return refuse(4014, "Disallowed intent(s).");
    const shard = d.shard;
    if (
      shard !== undefined &&
      (!Array.isArray(shard) ||
        shard.length !== 2 ||
        !Number.isInteger(shard[0]) ||
        !Number.isInteger(shard[1]) ||
        shard[0] < 0 ||
        shard[0] >= shard[1])
    )
      return refuse(4010, "Invalid shard.");
    const [shardId, shardCount] = Array.isArray(shard) ? (shard as [number, number]) : [0, 1];
    if (shardCount < state.shardCount) return refuse(4011, "Sharding required.");
    const props = d.properties as Record<string, unknown> | undefined;
    if (
      !props ||
      typeof props.os !== "string" ||
      typeof props.browser !== "string" ||
      typeof props.device !== "string"
    )
      return refuse(4002, "Error while decoding payload.");

    const session: Session = {
      id: randomBytes(16).toString("hex"),
      seq: 0,
      intents,
      history: [],
      connection,
      invalid: false,
      shard: [shardId, shardCount],
    };
    sessions.set(session.id, session);
    newest = session;
    connection.session = session;
    dispatchTo(session, "READY", {
      v: 10,
      user_settings: {},
      user: { ...userJson(state.bot), verified: true, mfa_enabled: false, flags: 0, email: null },
      // A server the bot left is no longer among its guilds.
      guilds:
        state.leftGuilds.has(state.guildId) || !owns(session, state.guildId)
          ? []
          : [{ id: state.guildId, unavailable: true }],
      session_id: session.id,
      session_type: "normal",
      resume_gateway_url: state.baseUrl.replace(/^http/, "ws"),
      shard: session.shard,
      application: { id: state.applicationId, flags: 0 },
      private_channels: [],
      relationships: [],
      presences: [],
      guild_join_requests: [],
      geo_ordered_rtc_regions: [],
      auth: {},
      _trace: ['["fake-discord-gateway",{"micros":0}]'],
    });
    if (intents & Intent.Guilds && !state.leftGuilds.has(state.guildId) && owns(session, state.guildId))
      dispatchTo(session, "GUILD_CREATE", guildCreate(intents));
    changed(state);
  };

  const resume = (connection: Connection, d: Record<string, unknown>) => {
    const record: ResumeRecord = {
      at: now(state),
      connection: connection.id,
      sessionId: String(d.session_id),
      seq: Number(d.seq),
      replayed: null,
    };
    resumes.push(record);
    if (d.token !== state.botToken) return serverClose(connection, 4004, "Authentication failed.");
    const session = sessions.get(String(d.session_id));
    if (!session || session.invalid) {
      send(connection, { op: 9, d: false, s: null, t: null });
      return changed(state);
    }
    if (typeof d.seq !== "number" || d.seq > session.seq)
      return serverClose(connection, 4007, "Invalid seq.");
    const previous = session.connection;
    if (previous && previous !== connection) serverClose(previous, 4009, "Session timed out.");
    session.connection = connection;
    connection.session = session;
    const missed = session.history.filter((p) => (p.s ?? 0) > (d.seq as number));
    for (const payload of missed) send(connection, payload);
    record.replayed = missed.length;
    send(connection, { op: 0, t: "RESUMED", s: ++session.seq, d: null });
    changed(state);
  };

  const onPayload = (connection: Connection, text: string) => {
    let payload: { op?: unknown; d?: unknown };
    try {
      payload = JSON.parse(text);
    } catch {
      return serverClose(connection, 4002, "Error while decoding payload.");
    }
    if (typeof payload !== "object" || payload === null || typeof payload.op !== "number")
      return serverClose(connection, 4002, "Error while decoding payload.");
    const d = (payload.d ?? {}) as Record<string, unknown>;
    received.push({
      op: payload.op,
      d: typeof d === "object" && d && "token" in d ? { ...d, token: "[redacted]" } : payload.d,
      s: null,
      t: null,
    });
    switch (payload.op) {
      case 1:
        heartbeats++;
        send(connection, { op: 11, d: null, s: null, t: null });
        return changed(state);
      case 2:
        if (connection.session) return serverClose(connection, 4005, "Already authenticated.");
        return identify(connection, d);
      case 6:
        if (connection.session) return serverClose(connection, 4005, "Already authenticated.");
        return resume(connection, d);
      case 3: // presence update
      case 4: // voice state update
      case 8: // request guild members
      case 31: // request soundboard sounds
        if (!connection.session) return serverClose(connection, 4003, "Not authenticated.");
        return;
      default:
        if (!connection.session) return serverClose(connection, 4003, "Not authenticated.");
        return serverClose(connection, 4001, "Unknown opcode.");
    }
  };

  return {
    url: state.baseUrl.replace(/^http/, "ws"),
    get connections() {
      return open.size;
    },
    identifies,
    resumes,
    received,
    closes,
    get heartbeats() {
      return heartbeats;
    },
    get session() {
      const s = newest as Session | null;
      return s ? { id: s.id, seq: s.seq, intents: s.intents, resumable: !s.invalid } : null;
    },
    requestReconnect() {
      for (const connection of open) send(connection, { op: 7, d: null, s: null, t: null });
    },
    dropConnections() {
      for (const connection of [...open]) {
        closes.push({ connection: connection.id, code: 1006, by: "server" });
        detach(connection);
        connection.ws.destroy();
      }
    },
    closeConnections(code, reason = "") {
      for (const connection of [...open]) {
        // After these, Discord's close-code table says to start a new session (4007, 4009) or not to reconnect.
        if (connection.session && [1000, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014].includes(code))
          connection.session.invalid = true;
        serverClose(connection, code, reason);
      }
    },
    invalidateSession(resumable) {
      for (const connection of open) {
        if (!resumable && connection.session) connection.session.invalid = true;
        // After op 9 the connection is unauthenticated again: the client RESUMEs (d: true) or IDENTIFYs.
        if (connection.session?.connection === connection) connection.session.connection = null;
        connection.session = null;
        send(connection, { op: 9, d: resumable, s: null, t: null });
      }
    },
    dispatch,
    handleUpgrade(req, socket, head) {
      const url = new URL(req.url ?? "/", "http://fake");
      // The fake speaks uncompressed JSON only: discord.js asks for zlib-stream only when zlib-sync is installed.
      if (
        url.pathname !== "/" ||
        (url.searchParams.get("encoding") ?? "json") !== "json" ||
        url.searchParams.has("compress")
      )
        return rejectUpgrade(socket, "400 Bad Request");
      const id = ++connectionIds;
      let connection: Connection | null = null;
      const ws = acceptUpgrade(req, socket, head, {
        onText: (text) => connection && onPayload(connection, text),
        onBinary: () => connection && serverClose(connection, 4002, "Error while decoding payload."),
        onClose: (code) => {
          if (!connection) return;
          if (open.has(connection)) closes.push({ connection: id, code, by: "client" });
          // A client that closes with 1000 or 1001 ends its session; other codes keep it resumable.
          if ((code === 1000 || code === 1001) && connection.session?.connection === connection)
            connection.session.invalid = true;
          detach(connection);
          changed(state);
        },
      });
      if (!ws) return;
      connection = { id, ws, session: null, sent: [] };
      open.add(connection);
      if (url.searchParams.get("v") !== "10") return serverClose(connection, 4012, "Invalid API version.");
      send(connection, { op: 10, d: { heartbeat_interval: options.heartbeatIntervalMs }, s: null, t: null });
      changed(state);
    },
    close() {
      for (const connection of [...open]) {
        connection.ws.destroy();
        detach(connection);
      }
    },
  };
}
