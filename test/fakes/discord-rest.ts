import type { IncomingMessage, ServerResponse } from "node:http";
import { type ApiCall, changed, type DiscordState, now } from "./discord-state.ts";

/**
 * The REST plumbing of the fake Discord (`/api/v10/…`): route matching, the `Authorization: Bot <token>` check
 * on the routes that need it, JSON and multipart bodies (`payload_json` + `files[n]`), Discord's error JSON
 * (`{ message, code, errors? }`), scripted failures (429 with Retry-After, 5xx, dropped connections) and the
 * call log. The routes themselves live in discord-commands.ts, discord-messages.ts and discord-interactions.ts.
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
  | { disconnect: true };

export type Failures = Map<string, DiscordFailure[]>;

const API_PREFIX = "/api/v10";

export async function handleRest(
  state: DiscordState,
  routes: Route[],
  failures: Failures,
  req: IncomingMessage,
  raw: Buffer,
  res: ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://fake");
  const method = req.method ?? "GET";
  // discord.js sends `@original` as `%40original`; Discord decodes path segments before routing.
  const path = safeDecode(url.pathname.slice(API_PREFIX.length)) || "/";
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
  const finish = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
    call.status = status;
    if (body && typeof body === "object" && "code" in body && status >= 400) {
      call.code = (body as { code: number }).code;
      call.error = String((body as { message?: unknown }).message);
    }
    send(res, status, body, headers);
    changed(state);
  };
  try {
    const match = matchRoute(routes, method, path);
    if (!match) throw Errors.notFound();
    if (match === "method") throw Errors.methodNotAllowed();
    const { route, params } = match;
    call.route = `${route.method} ${route.pattern}`;
    if (route.auth && call.auth !== "bot") throw Errors.unauthorized();
    const failure = failures.get(call.route)?.shift();
    if (failure) return applyFailure(failure, req, finish);
    const { body, files, multipart } = await parseBody(req, raw);
    call.body = body;
    call.files = files.map((f) => ({
      field: f.field,
      filename: f.filename,
      size: f.bytes.length,
      contentType: f.contentType,
    }));
    const request: RestRequest = {
      method,
      path,
      query: url.searchParams,
      headers: req.headers,
      body,
      files,
      multipart,
      call,
    };
    const response = await route.handler(state, request, params);
    if (response.status < 400) {
      call.status = response.status;
      await runAfterCall(state, call);
    }
    finish(response.status, response.body);
  } catch (error) {
    if (error instanceof DiscordApiError) {
      const body: Record<string, unknown> = { message: error.message, code: error.code };
      if (error.errors) body.errors = error.errors;
      return finish(error.status, body);
    }
    console.error("[fake-discord]", error);
    finish(500, { message: "500: Internal Server Error", code: 0 });
  }
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
  failure: DiscordFailure,
  req: IncomingMessage,
  finish: (status: number, body?: unknown, headers?: Record<string, string>) => void,
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
