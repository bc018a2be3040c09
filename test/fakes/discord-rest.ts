import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { DiscordRateLimiter } from "./discord-rate-limits.ts";
import { type ApiCall, changed, type DiscordState, now } from "./discord-state.ts";

/**
 * The REST plumbing of the fake Discord (`/api/v10/…`): route matching, the `Authorization: Bot <token>` check
 * on the routes that need it, JSON and multipart bodies (`payload_json` + `files[n]`), Discord's error JSON
 * (`{ message, code, errors? }`), Discord's rate limits (discord-rate-limits.ts), scripted failures (429 with
 * Retry-After, 5xx, dropped connections, requests left hanging) and the call log. The routes themselves live in
 * discord-commands.ts, discord-messages.ts and discord-interactions.ts.
 */

export class DiscordApiError extends Error {
  readonly status: number;
  readonly code: number;
  readonly errors: Record<string, unknown> | undefined;
  constructor(status: number, code: number, message: string, errors?: Record<string, unknown>) {
    super(message);
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

/** Discord's own status, code and message for each error the fake gives (discord-api-types RESTJSONErrorCodes). */
export const Errors = {
  unauthorized: () => new DiscordApiError(401, 0, "401: Unauthorized"),
  notFound: () => new DiscordApiError(404, 0, "404: Not Found"),
  methodNotAllowed: () => new DiscordApiError(405, 0, "405: Method Not Allowed"),
  unknownChannel: () => new DiscordApiError(404, 10003, "Unknown Channel"),
  unknownGuild: () => new DiscordApiError(404, 10004, "Unknown Guild"),
  unknownMessage: () => new DiscordApiError(404, 10008, "Unknown Message"),
  unknownEmoji: () => new DiscordApiError(400, 10014, "Unknown Emoji"),
  unknownWebhook: () => new DiscordApiError(404, 10015, "Unknown Webhook"),
  unknownCommand: () => new DiscordApiError(404, 10063, "Unknown application command"),
  unknownInteraction: () => new DiscordApiError(404, 10062, "Unknown interaction"),
  notAuthorizedForApplication: () =>
    new DiscordApiError(403, 20012, "You are not authorized to perform this action on this application"),
  tooLarge: () => new DiscordApiError(413, 40005, "Request entity too large"),
  alreadyAcknowledged: () => new DiscordApiError(400, 40060, "Interaction has already been acknowledged."),
  missingAccess: () => new DiscordApiError(403, 50001, "Missing Access"),
  cannotEditOthers: () => new DiscordApiError(403, 50005, "Cannot edit a message authored by another user"),
  emptyMessage: () => new DiscordApiError(400, 50006, "Cannot send an empty message"),
  missingPermissions: () => new DiscordApiError(403, 50013, "Missing Permissions"),
  wrongChannelType: () => new DiscordApiError(400, 50024, "Cannot execute action on this channel type"),
  invalidWebhookToken: () => new DiscordApiError(401, 50027, "Invalid Webhook Token"),
  invalidJson: () => new DiscordApiError(400, 50109, "The request body contains invalid JSON."),
  threadAlreadyCreated: () =>
    new DiscordApiError(400, 160004, "A thread has already been created for this message"),
  threadArchived: () => new DiscordApiError(400, 50083, "Thread is archived"),
  threadLocked: () => new DiscordApiError(403, 160005, "Thread is locked"),
};

/**
 * Collects field errors into Discord's `Invalid Form Body` (50035) shape:
 * `{ errors: { data: { content: { _errors: [{ code, message }] } } } }`.
 */
export class FormErrors {
  readonly #errors: Record<string, unknown> = {};
  #count = 0;

  add(path: Array<string | number>, code: string, message: string): void {
    let node = this.#errors as Record<string, unknown>;
    for (const key of path) {
      node[String(key)] ??= {};
      node = node[String(key)] as Record<string, unknown>;
    }
    node._errors ??= [];
    (node._errors as unknown[]).push({ code, message });
    this.#count++;
  }

  get empty(): boolean {
    return this.#count === 0;
  }

  throwIfAny(): void {
    if (this.#count > 0) throw new DiscordApiError(400, 50035, "Invalid Form Body", this.#errors);
  }
}

export interface UploadedFile {
  /** The form field, `files[n]`. */
  field: string;
  /** The `n` of `files[n]`: the `id` its entry in `attachments` refers to. */
  index: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

export interface RestRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage["headers"];
  /** The JSON body, or the parsed `payload_json` (or form fields) of a multipart body; undefined when empty. */
  body: unknown;
  files: UploadedFile[];
  multipart: boolean;
  call: ApiCall;
}

export interface RestResponse {
  status: number;
  body?: unknown;
}

export type Params = Record<string, string>;

export interface Route {
  method: string;
  /** `/channels/{channel}/messages/{message}`; literal segments (`@me`, `@original`) match exactly. */
  pattern: string;
  /** Whether Discord requires `Authorization: Bot <token>` (interaction callbacks and webhook routes do not). */
  auth: boolean;
  handler: (state: DiscordState, req: RestRequest, params: Params) => RestResponse | Promise<RestResponse>;
}

/** A scripted failure for the next call of a route (`"POST /channels/{channel}/messages"`). */
export type DiscordFailure =
  /** 429 with Retry-After; discord.js sleeps and retries (no retry cap). */
  | { rateLimited: true; retryAfterSeconds: number; global?: boolean }
  /** Any status; 4xx get Discord's error JSON with `code`, 5xx a plain body (discord.js retries those 3 times). */
  | { status: number; code?: number; message?: string }
  | { disconnect: true }
  /**
   * Never answered: the connection stays open until the client gives up (its `timeout`) or the fake closes. With
   * `processed`, the call takes effect first (the message is created) and then goes unanswered, which is what a
   * timeout on the real API can look like.
   */
  | { hang: true; processed?: boolean };

export type Failures = Map<string, DiscordFailure[]>;

/** What the REST API needs besides the state: its routes, scripted failures, rate limits and hung requests. */
export interface RestContext {
  routes: Route[];
  failures: Failures;
  limiter: DiscordRateLimiter;
  /** Sockets of requests a `hang` failure never answers; `close()` destroys them. */
  hung: Set<Socket>;
  /** CDN downloads still to leave unanswered (`stallDownloads`). */
  stalledDownloads: number;
}

type Finish = (status: number, body?: unknown, headers?: Record<string, string>) => void;

const API_PREFIX = "/api/v10";

export async function handleRest(
  state: DiscordState,
  context: RestContext,
  req: IncomingMessage,
  raw: Buffer,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://fake");
  const method = req.method ?? "GET";
  // discord.js sends `@original` as `%40original`; Discord decodes path segments before routing.
  const path = safeDecode(url.pathname.slice(API_PREFIX.length)) || "/";
  const call = recordCall(state, req, method, path, url);
  let rateLimitHeaders: Record<string, string> = {};
  const finish: Finish = (status, body, headers = rateLimitHeaders) => {
    call.status = status;
    if (body && typeof body === "object" && "code" in body && status >= 400) {
      call.code = (body as { code: number }).code;
      call.error = String((body as { message?: unknown }).message);
    }
    send(res, status, body, headers);
    changed(state);
  };
  let failure: DiscordFailure | undefined;
  try {
    const { route, params } = findRoute(context.routes, method, path);
    call.route = `${route.method} ${route.pattern}`;
    if (route.auth && call.auth !== "bot") throw Errors.unauthorized();
    // Discord counts a request against its limits before anything else happens to it.
    const limit = context.limiter.take(call.route, params, call.auth === "bot");
    if (limit.record) call.rateLimit = limit.record;
    if (limit.refusal) return finish(429, limit.refusal.body, limit.refusal.headers);
    rateLimitHeaders = limit.headers;
    failure = context.failures.get(call.route)?.shift();
    if (failure && !isProcessedHang(failure)) {
      if ("hang" in failure) return hang(state, context, req, call, false);
      return applyFailure(failure, req, finish);
    }
    const response = await runRoute(state, route, params, { req, raw, url, method, path, call });
    if (response.status < 400) {
      call.status = response.status;
      await runAfterCall(state, call);
    }
    if (failure) return hang(state, context, req, call, true);
    finish(response.status, response.body);
  } catch (error) {
    const { status, body } = errorResponse(error);
    if (failure) {
      call.status = status;
      return hang(state, context, req, call, true);
    }
    finish(status, body);
  }
}

function recordCall(
  state: DiscordState,
  req: IncomingMessage,
  method: string,
  path: string,
  url: URL,
): ApiCall {
  const call: ApiCall = {
    seq: ++state.seq,
    method,
    path,
    route: null,
    query: Object.fromEntries(url.searchParams),
    auth: authOf(state, req),
    contentType: req.headers["content-type"] ?? "",
    body: undefined,
    files: [],
    status: 0,
    at: now(state),
  };
  state.calls.push(call);
  return call;
}

/** Parses the body (JSON or multipart) and runs the route's handler. */
async function runRoute(
  state: DiscordState,
  route: Route,
  params: Params,
  input: { req: IncomingMessage; raw: Buffer; url: URL; method: string; path: string; call: ApiCall },
): Promise<RestResponse> {
  const { req, call } = input;
  const { body, files, multipart } = await parseBody(req, input.raw);
  call.body = body;
  call.files = files.map((f) => ({
    field: f.field,
    filename: f.filename,
    size: f.bytes.length,
    contentType: f.contentType,
  }));
  const request: RestRequest = {
    method: input.method,
    path: input.path,
    query: input.url.searchParams,
    headers: req.headers,
    body,
    files,
    multipart,
    call,
  };
  return route.handler(state, request, params);
}

/** Discord's error JSON for a DiscordApiError; anything else is the fake's own bug, answered as a 500. */
function errorResponse(error: unknown): RestResponse {
  if (error instanceof DiscordApiError) {
    const body: Record<string, unknown> = { message: error.message, code: error.code };
    if (error.errors) body.errors = error.errors;
    return { status: error.status, body };
  }
  console.error("[fake-discord]", error);
  return { status: 500, body: { message: "500: Internal Server Error", code: 0 } };
}

const isProcessedHang = (failure: DiscordFailure) => "hang" in failure && failure.processed === true;

/**
 * Leaves the request unanswered: the socket stays open until the client aborts it or `close()` destroys it. The
 * call's record says whether it took effect first (`status` is then what the fake would have answered).
 */
function hang(
  state: DiscordState,
  context: RestContext,
  req: IncomingMessage,
  call: ApiCall,
  processed: boolean,
) {
  call.hung = { processed };
  const socket = req.socket;
  context.hung.add(socket);
  socket.once("close", () => {
    context.hung.delete(socket);
    changed(state);
  });
  changed(state);
}

/** The first hook of the call's route whose `match` accepts it runs (once), awaited before the answer is sent. */
async function runAfterCall(state: DiscordState, call: ApiCall): Promise<void> {
  const hooks = call.route ? state.afterCall.get(call.route) : undefined;
  const index = hooks?.findIndex((hook) => hook.match(call)) ?? -1;
  const [hook] = index >= 0 ? (hooks?.splice(index, 1) ?? []) : [];
  await hook?.run(call);
}

/** A malformed escape cannot name a route: "%zz" gets the same 404 as any unknown path. */
function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return "/%";
  }
}

function authOf(state: DiscordState, req: IncomingMessage): ApiCall["auth"] {
  const header = req.headers.authorization;
  if (!header) return "none";
  return header === `Bot ${state.botToken}` ? "bot" : "invalid";
}

/** The route for a method and path; Discord's 404 or 405 when there is none. */
function findRoute(routes: Route[], method: string, path: string): { route: Route; params: Params } {
  const match = matchRoute(routes, method, path);
  if (!match) throw Errors.notFound();
  if (match === "method") throw Errors.methodNotAllowed();
  return match;
}

function matchRoute(
  routes: Route[],
  method: string,
  path: string,
): { route: Route; params: Params } | "method" | null {
  const segments = path.split("/").filter(Boolean);
  let methodMismatch = false;
  for (const route of routes) {
    const pattern = route.pattern.split("/").filter(Boolean);
    if (pattern.length !== segments.length) continue;
    const params: Params = {};
    const ok = pattern.every((part, i) => {
      const segment = segments[i] ?? "";
      if (part.startsWith("{")) {
        params[part.slice(1, -1)] = segment;
        return segment.length > 0;
      }
      return part === segment;
    });
    if (!ok) continue;
    if (route.method !== method) {
      methodMismatch = true;
      continue;
    }
    return { route, params };
  }
  return methodMismatch ? "method" : null;
}

function applyFailure(
  failure: Exclude<DiscordFailure, { hang: true }>,
  req: IncomingMessage,
  finish: Finish,
): void {
  if ("disconnect" in failure) {
    req.socket.destroy();
    return;
  }
  if ("rateLimited" in failure) {
    const headers: Record<string, string> = {
      "retry-after": String(failure.retryAfterSeconds),
      "x-ratelimit-scope": failure.global ? "global" : "user",
    };
    if (failure.global) headers["x-ratelimit-global"] = "true";
    finish(
      429,
      {
        message: "You are being rate limited.",
        retry_after: failure.retryAfterSeconds,
        global: !!failure.global,
      },
      headers,
    );
    return;
  }
  if (failure.status >= 500) {
    finish(failure.status, `${failure.status}: Server Error`);
    return;
  }
  finish(failure.status, { message: failure.message ?? `${failure.status}: Error`, code: failure.code ?? 0 });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined || status === 204) return void res.writeHead(status, headers).end();
  if (typeof body === "string")
    return void res.writeHead(status, { "content-type": "text/plain", ...headers }).end(body);
  // @discordjs/rest parses a body as JSON only when the content-type starts with application/json.
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

const FILE_FIELD = /^files\[(\d+)\]$/;

async function parseBody(
  req: IncomingMessage,
  raw: Buffer,
): Promise<{ body: unknown; files: UploadedFile[]; multipart: boolean }> {
  if (raw.length === 0) return { body: undefined, files: [], multipart: false };
  const contentType = (req.headers["content-type"] ?? "").toLowerCase();
  if (contentType.startsWith("application/json"))
    return { body: parseJson(raw.toString("utf8")), files: [], multipart: false };
  // Anything but JSON or multipart is not a body Discord can read.
  if (!contentType.startsWith("multipart/form-data")) throw Errors.invalidJson();
  let form: FormData;
  try {
    form = await new Request("http://fake/", {
      method: "POST",
      headers: { "content-type": req.headers["content-type"] ?? "" },
      body: raw,
      duplex: "half",
    } as RequestInit).formData();
  } catch {
    throw new DiscordApiError(400, 50035, "Invalid Form Body");
  }
  const files: UploadedFile[] = [];
  const fields: Record<string, unknown> = {};
  let payload: unknown;
  const errors = new FormErrors();
  for (const [field, value] of form.entries()) {
    if (typeof value === "string") {
      if (field === "payload_json") payload = parseJson(value);
      else fields[field] = value;
      continue;
    }
    const index = FILE_FIELD.exec(field)?.[1];
    if (index === undefined) {
      errors.add([field], "BASE_TYPE_INVALID", "File fields must be named files[n].");
      continue;
    }
    if (files.some((f) => f.index === index)) errors.add([field], "DUPLICATE", "Duplicate file field.");
    files.push({
      field,
      index,
      filename: value.name,
      contentType: value.type,
      bytes: Buffer.from(await value.arrayBuffer()),
    });
  }
  errors.throwIfAny();
  return { body: payload ?? (Object.keys(fields).length > 0 ? fields : undefined), files, multipart: true };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw Errors.invalidJson();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Body helpers for the routes
// ---------------------------------------------------------------------------------------------------------

export type Json = Record<string, unknown>;

/** The body as an object; Discord answers 50035 for a JSON body of the wrong shape. */
export function objectBody(req: RestRequest): Json {
  if (req.body === undefined) return {};
  if (typeof req.body !== "object" || req.body === null || Array.isArray(req.body)) {
    const errors = new FormErrors();
    errors.add([], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType");
    errors.throwIfAny();
  }
  return req.body as Json;
}

/** Routes that read no body still reject one that is not JSON; an empty body is fine. */
export const ok = (body?: unknown): RestResponse =>
  body === undefined ? { status: 204 } : { status: 200, body };
