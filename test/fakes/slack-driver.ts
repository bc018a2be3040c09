import { createHmac } from "node:crypto";
import {
  type AckRecord,
  appendMessage,
  createResponseUrl,
  nextTs,
  now,
  type SlackState,
  slackId,
  triggerId,
} from "./slack-state.ts";

/**
 * Slack's side of the HTTP conversation with the bot: signed slash commands, Events API callbacks and
 * interactivity payloads, built with every field Slack sends, timed, and judged by Slack's 3-second rule.
 * The payload builders are shared with Socket Mode (slack-socket.ts).
 */

/** `valid` (default), no signature headers at all, a correct signature on a timestamp over 5 minutes old, or a wrong secret. */
export type Signing = "valid" | "unsigned" | "stale" | "wrong_secret";

export interface DeliveryOptions {
  signing?: Signing;
  /** Overrides the ack deadline for this delivery (default: the fake's `ackTimeoutMs`, 3000). */
  ackTimeoutMs?: number;
}

export function signatureHeaders(
  signingSecret: string,
  body: string,
  timestampSec: number,
): Record<string, string> {
  const signature = createHmac("sha256", signingSecret).update(`v0:${timestampSec}:${body}`).digest("hex");
  return { "x-slack-request-timestamp": String(timestampSec), "x-slack-signature": `v0=${signature}` };
}

function signing(state: SlackState, body: string, mode: Signing = "valid"): Record<string, string> {
  const nowSec = Math.floor(Date.now() / 1000);
  if (mode === "unsigned") return {};
  if (mode === "stale") return signatureHeaders(state.signingSecret, body, nowSec - 6 * 60);
  return signatureHeaders(
    mode === "wrong_secret" ? `${state.signingSecret}x` : state.signingSecret,
    body,
    nowSec,
  );
}

/** POSTs like Slack: times the answer, gives up at the deadline, and records an AckRecord. */
export async function deliver(
  state: SlackState,
  url: string,
  request: {
    kind: AckRecord["kind"];
    id: string;
    body: string;
    contentType: string;
    headers?: Record<string, string>;
  },
  options: DeliveryOptions = {},
): Promise<AckRecord> {
  const deadline = options.ackTimeoutMs ?? state.ackTimeoutMs;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadline);
  const started = performance.now();
  const record: AckRecord = {
    transport: "http",
    kind: request.kind,
    id: request.id,
    latencyMs: null,
    status: null,
    body: undefined,
    ok: false,
  };
  const timeoutReason = request.kind === "event" ? "http_timeout" : "operation_timeout";
  const errorReason = request.kind === "event" ? "http_error" : "dispatch_failed";
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": request.contentType,
        "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        ...signing(state, request.body, options.signing),
        ...request.headers,
      },
      body: request.body,
      redirect: "manual",
      signal: controller.signal,
    });
    const text = await response.text();
    record.latencyMs = performance.now() - started;
    record.status = response.status;
    record.body = parseMaybeJson(text);
    record.ok = response.status === 200 && record.latencyMs <= deadline;
    if (!record.ok) record.reason = response.status === 200 ? timeoutReason : errorReason;
  } catch (error) {
    record.reason = controller.signal.aborted
      ? timeoutReason
      : request.kind === "event"
        ? "connection_failed"
        : errorReason;
    if (!controller.signal.aborted) record.body = String(error);
  } finally {
    clearTimeout(timer);
  }
  state.acks.push(record);
  return record;
}

export function parseMaybeJson(text: string): unknown {
  if (text === "") return "";
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Slash commands
// ---------------------------------------------------------------------------------------------------------

export interface SlashCommandInput {
  text: string;
  command?: string;
  user_id?: string;
  user_name?: string;
  channel_id?: string;
  channel_name?: string;
  team_domain?: string;
  trigger_id?: string;
  response_url?: string;
  /** Another workspace the app is installed in; the fake's own team by default. */
  team_id?: string;
  /** Extra fields sent as they are (e.g. `enterprise_id`). */
  [field: string]: string | undefined;
}

/** Every field Slack sends for a slash command, all strings, in Slack's order; creates the response_url. */
export function slashCommandFields(state: SlackState, input: SlashCommandInput): Record<string, string> {
  const channelId = input.channel_id ?? "C0001";
  const userId = input.user_id ?? "U0001";
  const fields: Record<string, string> = {
    token: state.verificationToken,
    team_id: input.team_id ?? state.teamId,
    team_domain: input.team_domain ?? state.teamDomain,
    channel_id: channelId,
    channel_name: input.channel_name ?? state.channels.get(channelId)?.name ?? "unknown",
    user_id: userId,
    user_name: input.user_name ?? state.users.get(userId) ?? "someone",
    command: input.command ?? "/imagine",
    text: input.text,
    api_app_id: state.appId,
    is_enterprise_install: "false",
    response_url: input.response_url ?? createResponseUrl(state, { channel: channelId, user: userId }),
    trigger_id: input.trigger_id ?? triggerId(),
  };
  for (const [key, value] of Object.entries(input))
    if (value !== undefined && !(key in fields)) fields[key] = value;
  return fields;
}

/**
 * A non-empty acknowledgement body is a message Slack shows: ephemeral to the user unless
 * `response_type: "in_channel"` (text bodies are ephemeral text).
 */
export function applyCommandAck(state: SlackState, fields: Record<string, string>, body: unknown): void {
  if (body === "" || body === undefined || body === null) return;
  const message = typeof body === "string" ? { text: body } : (body as Record<string, unknown>);
  if (typeof message.text !== "string" && !Array.isArray(message.blocks)) return; // `{}`: a plain ack
  const channel = fields.channel_id ?? "";
  const content = {
    ...(typeof message.text === "string" ? { text: message.text } : { text: "" }),
    ...(Array.isArray(message.blocks) ? { blocks: message.blocks } : {}),
  };
  if (message.response_type === "in_channel") {
    appendMessage(state, channel, {
      type: "message",
      ts: nextTs(state),
      user: state.botUserId,
      bot_id: state.botId,
      ...content,
    });
  } else {
    state.ephemerals.push({
      channel,
      user: fields.user_id ?? "",
      ...content,
      via: "ack",
      message_ts: nextTs(state),
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Events API
// ---------------------------------------------------------------------------------------------------------

export interface EventOptions extends DeliveryOptions {
  /** Keep the same event_id as the first attempt when retrying. */
  eventId?: string;
  /** 1, 2, 3 for Slack's retries; sends X-Slack-Retry-Num / X-Slack-Retry-Reason. */
  retryNum?: number;
  retryReason?: string;
}

export function eventEnvelope(state: SlackState, event: Record<string, unknown>, eventId = slackId("Ev")) {
  const eventTs =
    typeof event.event_ts === "string" ? event.event_ts : typeof event.ts === "string" ? event.ts : "";
  const eventTime = eventTs ? Math.floor(Number(eventTs)) : Math.floor(now(state) / 1000);
  return {
    token: state.verificationToken,
    team_id: state.teamId,
    context_team_id: state.teamId,
    context_enterprise_id: null,
    api_app_id: state.appId,
    event,
    type: "event_callback",
    event_id: eventId,
    event_time: eventTime,
    authorizations: [
      {
        enterprise_id: null,
        team_id: state.teamId,
        user_id: state.botUserId,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: `4-${Buffer.from(JSON.stringify({ et: event.type, tid: state.teamId, aid: state.appId, cid: event.channel })).toString("base64url")}`,
  };
}

export function retryHeaders(options: { retryNum?: number; retryReason?: string }): Record<string, string> {
  if (!options.retryNum) return {};
  return {
    "x-slack-retry-num": String(options.retryNum),
    "x-slack-retry-reason": options.retryReason ?? "http_timeout",
  };
}
