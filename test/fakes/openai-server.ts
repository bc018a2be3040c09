import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { handleImages } from "./openai-images-api.ts";
import { handleResponses } from "./openai-responses.ts";
import {
  FakeApiError,
  invalidRequest,
  type OpenAIErrorObject,
  RATE_LIMIT_ERROR,
  SERVER_ERROR,
} from "./openai-rules.ts";

/**
 * A strict local stand-in for the OpenAI API (reference/protocols.md C), spoken to by the real `openai` SDK:
 * `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart) and `POST /v1/responses` with the
 * image_generation tool, streaming or not. It validates like gpt-image-2, answers with real images made by
 * sharp, records every request (with the exact uploaded bytes) and fails on demand.
 */

export type FakeEndpoint = "images.generate" | "images.edit" | "responses";

export interface RecordedFile {
  /** The multipart field name: `image`, `image[]` or `mask`. */
  field: string;
  filename: string | null;
  contentType: string;
  bytes: Buffer;
}

export interface RecordedRequest {
  /** 1, 2, 3 … in arrival order; also seeds the generated images. */
  seq: number;
  method: string;
  path: string;
  endpoint: FakeEndpoint | null;
  /** Lower-case names; `authorization` is replaced by "[redacted]". */
  headers: Record<string, string>;
  /** `x-stainless-retry-count`: 0 on the SDK's first attempt, 1 on its first retry … */
  retryCount: number | null;
  /** The JSON body, or the multipart scalar fields (strings, as sent). */
  body: Record<string, unknown>;
  /** Every multipart file part, in wire order. */
  files: RecordedFile[];
  /** Edits: the bytes of each `image`/`image[]` part in order. Responses: each decoded `input_image` data URL. */
  images: Buffer[];
  mask: Buffer | null;
  stream: boolean;
  /** The status sent (200 also for streams that later failed); null until answered or when disconnected. */
  status: number | null;
  requestId: string;
  /**
   * What this request was billed: the usage the fake reported for it (a response, a stream's completed images),
   * recorded as the work is done — so a request whose client went away mid-call is billed all the same, as
   * OpenAI bills a generation that ran. Error answers (429, 5xx, a moderation 400) bill nothing.
   */
  bills: FakeBill[];
}

/** One model's tokens billed for a request (`usage` as the API reports it). */
export interface FakeBill {
  kind: "image" | "reasoning";
  model: string;
  usage: Record<string, unknown>;
}

/**
 * One scripted failure applies to one request, in order: the next authenticated request to a known endpoint
 * takes it. HTTP failures are answered before validation; `moderation` and `streamError` after it.
 */
export type ScriptedFailure =
  | {
      status: number;
      retryAfterSeconds?: number;
      retryAfterMs?: number;
      /** Sent verbatim instead of the default body for the status (429 rate limit, 5xx server error, …). */
      body?: unknown;
      headers?: Record<string, string>;
    }
  /** Images: HTTP 400 `moderation_blocked`. Responses: a `failed` response whose error is `moderation_blocked`. */
  | { moderation: true; categories?: string[]; stage?: "input" | "output" }
  /** Streams: `afterEvents` ordinary events (default 1), then `event: error`. Non-streaming requests get a 500. */
  | { streamError: true; afterEvents?: number; error?: OpenAIErrorObject }
  /** Closes the socket without answering (the SDK sees a connection error and retries). */
  | { disconnect: true };

export interface FakeOpenAIOptions {
  apiKey?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  latencyMs?: number;
  /**
   * An account limit on requests being answered at once: one more gets 429 `rate_limit_exceeded` (with
   * `retry-after: 1`), as a burst past an organisation's limits does. Unlimited by default.
   */
  maxConcurrent?: number;
  /** Called once each request is over (answered, stream ended, or connection closed). */
  onRequestDone?: (request: RecordedRequest) => void;
}

export interface FakeOpenAI {
  /** `http://127.0.0.1:PORT/v1`, for the SDK's `baseURL` / `OPENAI_BASE_URL`. */
  baseUrl: string;
  apiKey: string;
  port: number;
  requests: RecordedRequest[];
  failNext(...failures: ScriptedFailure[]): void;
  /** Delay before every answer, to exercise timeouts, progress and concurrency. */
  setLatency(ms: number): void;
  /**
   * Ends every latency wait now running: those requests are worked (and billed) at once — answered if their
   * client is still there, as OpenAI finishes a generation whose client went away.
   */
  finishWaiting(): void;
  /** The most requests to a known endpoint that were being answered at once. */
  readonly peakConcurrent: number;
  /** Requests refused because `maxConcurrent` were already being answered. */
  readonly concurrencyRejections: number;
  /** Forgets recorded requests and pending failures. */
  reset(): void;
  close(): Promise<void>;
}

/** What an endpoint handler gets; `failure` is only ever a `moderation` or `streamError` failure. */
export interface EndpointContext {
  record: RecordedRequest;
  failure: Extract<ScriptedFailure, { moderation: true } | { streamError: true }> | undefined;
  createdAt: number;
  sendJson(status: number, body: unknown): void;
  /** Opens a 200 `text/event-stream`; `errorData` shapes the `event: error` of a scripted mid-stream failure. */
  openStream(errorData: (error: OpenAIErrorObject, sequence: number) => unknown): SseWriter;
}

export interface SseWriter {
  send(event: string, data: unknown): void;
  end(): void;
  /** True once a scripted failure ended the stream or the client went away: stop producing. */
  readonly closed: boolean;
  /** The client went away: OpenAI still finishes (and bills) the work, with no one to send it to. */
  readonly abandoned: boolean;
}

const ROUTES: Record<string, FakeEndpoint> = {
  "POST /v1/images/generations": "images.generate",
  "POST /v1/images/edits": "images.edit",
  "POST /v1/responses": "responses",
};

const MAX_BODY_BYTES = 256 * 1024 * 1024;

interface State {
  apiKey: string;
  requests: RecordedRequest[];
  failures: ScriptedFailure[];
  latencyMs: number;
  maxConcurrent: number;
  inFlight: number;
  peakConcurrent: number;
  concurrencyRejections: number;
  seq: number;
  onRequestDone: ((request: RecordedRequest) => void) | undefined;
  /** Ends the latency waits now running (see `finishWaiting`). */
  waiting: Set<() => void>;
}

export async function startFakeOpenAI(options: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
  const state: State = {
    apiKey: options.apiKey ?? `sk-fake-${randomBytes(12).toString("hex")}`,
    requests: [],
    failures: [],
    latencyMs: options.latencyMs ?? 0,
    maxConcurrent: options.maxConcurrent ?? Number.POSITIVE_INFINITY,
    inFlight: 0,
    peakConcurrent: 0,
    concurrencyRejections: 0,
    seq: 0,
    onRequestDone: options.onRequestDone,
    waiting: new Set(),
  };
  const server = createServer((req, res) => void handle(req, res, state));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    apiKey: state.apiKey,
    port,
    requests: state.requests,
    failNext: (...failures) => void state.failures.push(...failures),
    setLatency: (ms) => {
      state.latencyMs = ms;
    },
    finishWaiting: () => {
      for (const finish of state.waiting) finish();
    },
    get peakConcurrent() {
      return state.peakConcurrent;
    },
    get concurrencyRejections() {
      return state.concurrencyRejections;
    },
    reset() {
      state.requests.length = 0;
      state.failures.length = 0;
      state.peakConcurrent = state.inFlight;
      state.concurrencyRejections = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, state: State): Promise<void> {
  const path = new URL(req.url ?? "/", "http://fake").pathname;
  const record: RecordedRequest = {
    seq: ++state.seq,
    method: req.method ?? "GET",
    path,
    endpoint: null,
    headers: recordHeaders(req),
    retryCount: req.headers["x-stainless-retry-count"]
      ? Number(req.headers["x-stainless-retry-count"])
      : null,
    body: {},
    files: [],
    images: [],
    mask: null,
    stream: false,
    status: null,
    requestId: `req_${randomBytes(16).toString("hex")}`,
    bills: [],
  };
  state.requests.push(record);
  res.on("error", () => {}); // a client that went away must not crash the fake
  res.on("close", () => state.onRequestDone?.(record));
  const sendJson = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent || res.destroyed) return;
    record.status = status;
    res.writeHead(status, {
      "content-type": "application/json",
      "x-request-id": record.requestId,
      "openai-processing-ms": "1",
      ...headers,
    });
    res.end(JSON.stringify(body));
  };
  let stream: SseWriter | null = null;
  try {
    checkAuth(req.headers.authorization, state.apiKey);
    const endpoint = ROUTES[`${record.method} ${path}`];
    if (!endpoint) {
      throw new FakeApiError(404, {
        message: `Invalid URL (${record.method} ${path})`,
        type: "invalid_request_error",
        param: null,
        code: null,
      });
    }
    record.endpoint = endpoint;
    if (state.inFlight >= state.maxConcurrent) {
      state.concurrencyRejections++;
      throw new FakeApiError(429, RATE_LIMIT_ERROR, { "retry-after": "1" });
    }
    state.inFlight++;
    state.peakConcurrent = Math.max(state.peakConcurrent, state.inFlight);
    res.on("close", () => state.inFlight--);
    const raw = await readBody(req);
    if (endpoint === "images.edit") await parseMultipart(req, raw, record);
    else parseJson(raw, record);

    const failure = state.failures.shift();
    if (state.latencyMs > 0) await latency(state);
    if (failure && "disconnect" in failure) {
      req.socket.destroy();
      return;
    }
    if (failure && "status" in failure) throw scriptedHttpError(failure);
    const context: EndpointContext = {
      record,
      failure,
      createdAt: Math.floor(Date.now() / 1000),
      sendJson: (status, body) => sendJson(status, body),
      openStream: (errorData) => {
        stream = openStream(
          res,
          record,
          failure && "streamError" in failure ? failure : undefined,
          errorData,
        );
        return stream;
      },
    };
    if (endpoint === "responses") await handleResponses(context);
    else await handleImages(context, endpoint === "images.edit" ? "edit" : "generate");
  } catch (error) {
    const apiError =
      error instanceof FakeApiError
        ? error
        : new FakeApiError(500, { ...SERVER_ERROR, message: `fake OpenAI server bug: ${String(error)}` });
    if (!(error instanceof FakeApiError)) console.error("[fake-openai]", error);
    const open = stream as SseWriter | null;
    if (open) {
      open.send("error", { type: "error", error: apiError.error });
      open.end();
    } else {
      sendJson(apiError.status, apiError.body ?? { error: apiError.error }, apiError.headers);
    }
  }
}

function latency(state: State): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      state.waiting.delete(finish);
      resolve();
    };
    const timer = setTimeout(finish, state.latencyMs);
    state.waiting.add(finish);
  });
}

function recordHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    headers[name] = name === "authorization" ? "[redacted]" : Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}

function checkAuth(header: string | undefined, apiKey: string): void {
  if (!header?.startsWith("Bearer ") || header.length <= "Bearer ".length) {
    throw new FakeApiError(401, {
      message:
        "You didn't provide an API key. You need to provide your API key in an Authorization header using " +
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from " +
        "https://platform.openai.com/account/api-keys.",
      type: "invalid_request_error",
      param: null,
      code: null,
    });
  }
  const given = header.slice("Bearer ".length);
  if (given !== apiKey) {
    throw new FakeApiError(401, {
      message:
        `Incorrect API key provided: ${given.slice(0, 6)}*****${given.slice(-4)}. You can find your API key ` +
        "at https://platform.openai.com/account/api-keys.",
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key",
    });
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      throw new FakeApiError(413, { ...SERVER_ERROR, message: "Request body too large." });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseJson(raw: Buffer, record: RecordedRequest): void {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch {
    throw invalidRequest(
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP " +
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
      null,
      null,
    );
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalidRequest("The request body must be a JSON object.", null, null);
  }
  record.body = body as Record<string, unknown>;
}

/** Node's own `Request` parses multipart; the parts are recorded by name, in the order they arrived. */
async function parseMultipart(req: IncomingMessage, raw: Buffer, record: RecordedRequest): Promise<void> {
  const contentType = req.headers["content-type"] ?? "";
  if (!contentType.startsWith("multipart/form-data")) {
    throw invalidRequest(
      `Invalid Content-Type header (${contentType || "none"}), expected multipart/form-data. (HINT: If you're ` +
        "using curl, you can pass -F 'key=value' in order to upload files)",
      null,
      null,
    );
  }
  let form: FormData;
  try {
    form = await new Request("http://fake/", {
      method: "POST",
      headers: { "content-type": contentType },
      body: raw,
      duplex: "half",
    } as RequestInit).formData();
  } catch {
    throw invalidRequest("Could not parse multipart form data.", null, null);
  }
  for (const [field, value] of form.entries()) {
    if (typeof value === "string") {
      const previous = record.body[field];
      record.body[field] = previous === undefined ? value : [previous, value].flat();
      continue;
    }
    const bytes = Buffer.from(await value.arrayBuffer());
    record.files.push({ field, filename: value.name || null, contentType: value.type, bytes });
    if (field === "image" || field === "image[]") record.images.push(bytes);
    if (field === "mask") record.mask = bytes;
  }
}

function scriptedHttpError(failure: Extract<ScriptedFailure, { status: number }>): FakeApiError {
  const headers: Record<string, string> = { ...failure.headers };
  if (failure.retryAfterSeconds !== undefined) headers["retry-after"] = String(failure.retryAfterSeconds);
  if (failure.retryAfterMs !== undefined) headers["retry-after-ms"] = String(failure.retryAfterMs);
  const fallback: OpenAIErrorObject =
    failure.status === 429
      ? RATE_LIMIT_ERROR
      : failure.status >= 500
        ? SERVER_ERROR
        : {
            message: `Scripted failure ${failure.status}.`,
            type: "invalid_request_error",
            param: null,
            code: null,
          };
  return new FakeApiError(failure.status, fallback, headers, failure.body);
}

function openStream(
  res: ServerResponse,
  record: RecordedRequest,
  failure: { afterEvents?: number; error?: OpenAIErrorObject } | undefined,
  errorData: (error: OpenAIErrorObject, sequence: number) => unknown,
): SseWriter {
  record.status = 200;
  record.stream = true;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-request-id": record.requestId,
  });
  let sent = 0;
  let closed = false;
  const writer: SseWriter = {
    send(event, data) {
      if (closed || res.destroyed) return;
      if (failure && sent === (failure.afterEvents ?? 1)) {
        res.write(
          `event: error\ndata: ${JSON.stringify(errorData(failure.error ?? SERVER_ERROR, sent))}\n\n`,
        );
        writer.end();
        return;
      }
      sent += 1;
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      closed = true;
      res.end();
    },
    get closed() {
      return closed || res.destroyed;
    },
    get abandoned() {
      return !closed && res.destroyed;
    },
  };
  return writer;
}
