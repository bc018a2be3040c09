import type { IncomingMessage, ServerResponse } from "node:http";
import { validateBlocks } from "./slack-blocks.ts";
import {
  type ApiCall,
  type ChannelInfo,
  findMessage,
  messageEvent,
  type SlackMessage,
  type SlackState,
  slackId,
} from "./slack-state.ts";

/**
 * The Web API plumbing (`POST {apiUrl}{method}`), checked like Slack checks it: token and token type, content
 * type (form, multipart, or JSON with a bearer header), then the method's own argument checks. Every answer is
 * HTTP 200 with `{ ok }` JSON, as Slack's are, except 429 over a rate limit (slack-rate-limits.ts); scripted
 * failures can also give 429 (with Retry-After), 5xx, a dropped connection or a request left hanging. The
 * methods live in slack-messages.ts and slack-files.ts; shared argument checks are here.
 */

export class SlackApiError extends Error {
  readonly error: string;
  readonly detail: string | undefined;
  constructor(error: string, detail?: string) {
    super(detail ? `${error}: ${detail}` : error);
    this.error = error;
    this.detail = detail;
  }
}

/** One scripted failure for the next call of a method (`"upload"` names the upload URL POST). */
export type SlackFailure =
  /** HTTP 200 `{ ok: false, error }`; the client throws a platform error and does not retry. */
  | { error: string }
  /** HTTP 429 `{ ok: false, error: "ratelimited" }` with `Retry-After`. */
  | { rateLimited: true; retryAfterSeconds: number }
  /** Any other status: the client retries these (set `retryConfig` in tests). */
  | { status: number; body?: string }
  | { disconnect: true }
  /**
   * Never answered: the connection stays open until the client gives up (its `timeout`) or the fake closes. With
   * `processed`, the call takes effect first (the message is posted, the bytes stored) and then goes unanswered,
   * which is what a timeout on the real API can look like.
   */
  | { hang: true; processed?: boolean };

export type Failures = Map<string, SlackFailure[]>;

export type Args = Record<string, unknown>;
/** A Web API method: returns the fields of an `ok: true` answer or throws SlackApiError. */
export type WebApiMethod = (state: SlackState, args: Args) => Record<string, unknown>;

const APP_TOKEN_METHODS = new Set(["apps.connections.open"]);

export async function handleWebApi(
  state: SlackState,
  methods: Record<string, WebApiMethod>,
  failures: Failures,
  method: string,
  req: IncomingMessage,
  raw: Buffer,
  res: ServerResponse,
): Promise<void> {
  const call: ApiCall = {
    seq: ++state.seq,
    method,
    args: {},
    contentType: req.headers["content-type"] ?? "",
    tokenKind: "none",
    ok: false,
    at: Date.now(),
  };
  state.calls.push(call);
  const answer = (body: Record<string, unknown>) => {
    call.ok = body.ok === true;
    if (!call.ok) call.error = String(body.error);
    sendJson(res, 200, body);
  };
  let failure: SlackFailure | undefined;
  try {
    const handler = methods[method];
    if (!handler) return answer({ ok: false, error: "unknown_method", req_method: method });
    const args = await authenticatedArgs(state, call, req, raw);
    // Slack counts a call against its method's limits before it does anything with it.
    const grant = state.rateLimits.take(method, postingChannel(state, method, args));
    if (grant.refusal) return refuse(call, res, grant.refusal);
    failure = failures.get(method)?.shift();
    if (failure && !isProcessedHang(failure)) {
      grant.refund();
      if ("hang" in failure) return hang(state, req, call, false);
      const noteStatus = (status: number) => {
        call.error = `HTTP ${status}`;
      };
      if (applyFailure(failure, req, res, noteStatus)) return;
      throw new SlackApiError((failure as { error: string }).error);
    }
    const result = runMethod(state, handler, args, grant.refund);
    await state.afterCall.get(method)?.shift()?.();
    if (failure) return hang(state, req, call, true);
    answer({ ok: true, ...result });
  } catch (error) {
    if (failure && isProcessedHang(failure)) return hang(state, req, call, true);
    if (!(error instanceof SlackApiError)) {
      console.error("[fake-slack]", error);
      return answer({ ok: false, error: "fatal_error" });
    }
    const body: Record<string, unknown> = { ok: false, error: error.error };
    if (error.detail) body.response_metadata = { messages: error.detail.split("\n") };
    answer(body);
  }
}

/** The call's arguments once its token is good for the method; Slack's auth errors otherwise. */
async function authenticatedArgs(state: SlackState, call: ApiCall, req: IncomingMessage, raw: Buffer) {
  const { args, json } = await parseArgs(req, raw);
  const { token: _token, ...shown } = args;
  call.args = _token === undefined ? shown : { ...shown, token: "[redacted]" };
  call.tokenKind = authenticate(state, req, args, json);
  if (call.tokenKind === "none") throw new SlackApiError("not_authed");
  if (call.tokenKind === "invalid") throw new SlackApiError("invalid_auth");
  if ((call.tokenKind === "app") !== APP_TOKEN_METHODS.has(call.method))
    throw new SlackApiError("not_allowed_token_type");
  return args;
}

/** Runs a method; a post that failed gives back what it took from its channel's allowance. */
function runMethod(state: SlackState, handler: WebApiMethod, args: Args, refund: () => void) {
  try {
    return handler(state, args);
  } catch (error) {
    refund();
    throw error;
  }
}

/** The channel a chat.postMessage posts to (by id, also when named `#general`), for its per-channel limit. */
function postingChannel(state: SlackState, method: string, args: Args): string | undefined {
  if (method !== "chat.postMessage") return undefined;
  const value = str(args, "channel");
  if (value === undefined) return undefined;
  const named = [...state.channels.values()].find((c) => `#${c.name}` === value || c.name === value);
  return state.channels.get(value)?.id ?? named?.id ?? value;
}

/** Slack's answer over a rate limit: HTTP 429, `ratelimited`, and how many seconds to wait. */
function refuse(
  call: ApiCall,
  res: ServerResponse,
  refusal: { scope: "method" | "channel"; retryAfterSeconds: number },
): void {
  call.error = "ratelimited";
  call.rateLimited = refusal;
  sendJson(
    res,
    429,
    { ok: false, error: "ratelimited" },
    { "retry-after": String(refusal.retryAfterSeconds) },
  );
}

export const isProcessedHang = (failure: SlackFailure) => "hang" in failure && failure.processed === true;

/**
 * Leaves the request unanswered: the socket stays open until the client aborts it or the fake's `close()`
 * destroys it. `processed` tells whether the call took effect first.
 */
export function hang(
  state: SlackState,
  req: IncomingMessage,
  record: { hung?: { processed: boolean } },
  processed: boolean,
): void {
  record.hung = { processed };
  const socket = req.socket;
  state.hung.add(socket);
  socket.once("close", () => state.hung.delete(socket));
}

/** Applies an HTTP-level failure; false for `{ error }`, which the caller turns into an `ok:false` answer. */
export function applyFailure(
  failure: Exclude<SlackFailure, { hang: true }>,
  req: IncomingMessage,
  res: ServerResponse,
  note: (status: number) => void,
): boolean {
  if ("disconnect" in failure) {
    note(0);
    req.socket.destroy();
    return true;
  }
  if ("rateLimited" in failure) {
    note(429);
    sendJson(
      res,
      429,
      { ok: false, error: "ratelimited" },
      { "retry-after": String(failure.retryAfterSeconds) },
    );
    return true;
  }
  if ("status" in failure) {
    note(failure.status);
    res.writeHead(failure.status, { "content-type": "text/html" });
    res.end(failure.body ?? `<html><body>${failure.status}</body></html>`);
    return true;
  }
  return false;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

/** Slack takes form bodies, multipart and (with a bearer header) JSON; query-string arguments are merged in. */
async function parseArgs(req: IncomingMessage, raw: Buffer): Promise<{ args: Args; json: boolean }> {
  const args: Args = Object.fromEntries(new URL(req.url ?? "/", "http://fake").searchParams);
  const contentType = (req.headers["content-type"] ?? "").toLowerCase();
  const charset = /charset=([^;\s]+)/.exec(contentType)?.[1];
  if (charset && !["utf-8", "utf8", "iso-8859-1"].includes(charset))
    throw new SlackApiError("invalid_charset");
  if (raw.length === 0) return { args, json: false };
  if (!contentType) throw new SlackApiError("missing_post_type");
  if (contentType.startsWith("application/x-www-form-urlencoded")) {
    for (const [key, value] of new URLSearchParams(raw.toString("utf8"))) args[key] = value;
    return { args, json: false };
  }
  if (contentType.startsWith("multipart/form-data")) {
    const form = await formData(req, raw).catch(() => {
      throw new SlackApiError("invalid_form_data");
    });
    for (const [key, value] of form.entries()) {
      args[key] = typeof value === "string" ? value : Buffer.from(await value.arrayBuffer());
    }
    return { args, json: false };
  }
  if (contentType.startsWith("application/json")) {
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new SlackApiError("invalid_json");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new SlackApiError("json_not_object");
    return { args: { ...args, ...(body as Args) }, json: true };
  }
  throw new SlackApiError("invalid_post_type");
}

export function formData(req: IncomingMessage, raw: Buffer): Promise<FormData> {
  return new Request("http://fake/", {
    method: "POST",
    headers: { "content-type": req.headers["content-type"] ?? "" },
    body: raw,
    duplex: "half",
  } as RequestInit).formData();
}

/** The bearer header wins; form bodies may carry `token` instead (JSON bodies may not). */
function authenticate(state: SlackState, req: IncomingMessage, args: Args, json: boolean) {
  const header = req.headers.authorization;
  const bearer = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
  const token = bearer || (json ? undefined : typeof args.token === "string" ? args.token : undefined);
  if (!token) return "none" as const;
  if (token === state.botToken) return "bot" as const;
  if (token === state.appToken) return "app" as const;
  return "invalid" as const;
}

// ---------------------------------------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------------------------------------

export function str(args: Args, name: string): string | undefined {
  const value = args[name];
  if (value === undefined || value === null || value === "") return undefined;
  return typeof value === "string"
    ? value
    : typeof value === "object"
      ? JSON.stringify(value)
      : String(value);
}

export function required(args: Args, name: string, error = "invalid_arguments"): string {
  const value = str(args, name);
  if (value === undefined) throw new SlackApiError(error, `[ERROR] missing required field: ${name}`);
  return value;
}

/** A JSON-valued argument: a JSON string in form bodies, a value in JSON bodies. */
export function jsonArg(args: Args, name: string, error: string): unknown {
  const value = args[name];
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    throw new SlackApiError(error, `[ERROR] ${name} must be valid JSON [json-pointer:/${name}]`);
  }
}

export function blocksArg(args: Args): unknown[] | undefined {
  const blocks = jsonArg(args, "blocks", "invalid_blocks_format");
  if (blocks === undefined) return undefined;
  const problems = validateBlocks(blocks);
  if (problems.length > 0) throw new SlackApiError("invalid_blocks", problems.join("\n"));
  return blocks as unknown[];
}

export const flag = (args: Args, name: string) =>
  args[name] === true || args[name] === "true" || args[name] === "1";

export function channelArg(state: SlackState, args: Args, name = "channel", needMember = true): ChannelInfo {
  const value = required(args, name, "channel_not_found");
  const channel =
    state.channels.get(value) ??
    [...state.channels.values()].find((c) => `#${c.name}` === value || c.name === value);
  if (!channel) throw new SlackApiError("channel_not_found");
  if (needMember && !channel.member) throw new SlackApiError("not_in_channel");
  return channel;
}

/**
 * `thread_ts` must be the ts of a message in that channel that is not itself a reply. Slack's own behaviour here
 * is loose (it may answer ok and drop the reply out of sight), so the fake refuses loudly instead.
 */
export function threadArg(state: SlackState, channel: string, args: Args): string | undefined {
  const threadTs = str(args, "thread_ts");
  if (threadTs === undefined) return undefined;
  const parent = /^\d{10}\.\d{6}$/.test(threadTs) ? findMessage(state, channel, threadTs) : undefined;
  if (!parent) {
    throw new SlackApiError("thread_not_found", `[ERROR] no message with ts ${threadTs} in ${channel}`);
  }
  if (parent.thread_ts && parent.thread_ts !== parent.ts) {
    throw new SlackApiError(
      "thread_not_found",
      `[ERROR] ${threadTs} is a reply; use its parent's ts ${parent.thread_ts} as thread_ts`,
    );
  }
  return threadTs;
}

export function contentArgs(args: Args): { text: string; blocks?: unknown[]; attachments?: unknown } {
  const text = str(args, "text");
  const blocks = blocksArg(args);
  const attachments = jsonArg(args, "attachments", "invalid_attachments");
  if (text === undefined && !blocks?.length && !(Array.isArray(attachments) && attachments.length))
    throw new SlackApiError("no_text");
  if (text && text.length > 40_000) throw new SlackApiError("msg_too_long");
  return { text: text ?? "", ...(blocks ? { blocks } : {}), ...(attachments ? { attachments } : {}) };
}

export function botEvent(state: SlackState, channel: string, message: SlackMessage) {
  state.onBotEvent?.(messageEvent(state, channel, message));
}

// ---------------------------------------------------------------------------------------------------------
// Identity and Socket Mode
// ---------------------------------------------------------------------------------------------------------

export const CORE_METHODS: Record<string, WebApiMethod> = {
  "auth.test": (state) => ({
    url: `https://${state.teamDomain}.slack.com/`,
    team: state.teamName,
    user: "threadcanvas",
    team_id: state.teamId,
    user_id: state.botUserId,
    bot_id: state.botId,
    is_enterprise_install: false,
  }),

  "apps.connections.open": (state) => {
    const ticket = slackId("", 32).toLowerCase();
    state.socketTickets.add(ticket);
    return { url: `${state.baseUrl.replace(/^http/, "ws")}/link/?ticket=${ticket}&app_id=${state.appId}` };
  },
};
