import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";

/**
 * Discord's rate limits (developer docs, "Rate Limits"), enforced by the fake Discord's REST API:
 *
 * - Per-route buckets. A route (or a group of routes sharing a bucket) allows `limit` requests per `windowMs`,
 *   counted apart for each value of its major parameter (`channel`, `guild`, `webhook`). The window starts with the
 *   first request after the previous one ran out. Every answer on such a route carries `X-RateLimit-Limit`,
 *   `-Remaining`, `-Reset` (epoch seconds), `-Reset-After` (seconds) and `-Bucket` (an opaque hash, the same for
 *   every major parameter). A request over the limit gets 429 with `Retry-After` (whole seconds, rounded up, as
 *   Discord's header is), `X-RateLimit-Scope: user` and `{ message, retry_after, global: false }`.
 * - The global limit: 50 requests per second per bot token, over every request authenticated with it; interaction
 *   callbacks and webhook-token routes carry no token and are not bound by it. Over it: 429 with
 *   `X-RateLimit-Global: true`, `X-RateLimit-Scope: global` and `global: true` in the body.
 *
 * Windows run on real (monotonic) time, not on the fake's clock: the client waits in real time, and a test that
 * moves the fake's clock must not strand a bucket.
 */

export interface DiscordBucketRule {
  /** Routes counted together, named as in `failNext`: `"POST /channels/{channel}/messages"`. */
  routes: string[];
  /** The route parameter that gets its own count (Discord's major parameter); omit for one count for all. */
  per?: string;
  limit: number;
  windowMs: number;
}

export interface DiscordRateLimits {
  /** Per-route buckets; default `DEFAULT_DISCORD_BUCKETS`. */
  buckets?: DiscordBucketRule[];
  /** The bot token's global limit; default `DEFAULT_DISCORD_GLOBAL` (50 per second); `false` for none. */
  global?: { limit: number; windowMs: number } | false;
}

/**
 * Creating and editing messages: 5 requests per 5 seconds per channel (Discord's long-observed limit; each route
 * its own bucket). Other routes have no bucket of their own in the fake, only the global limit.
 */
export const DEFAULT_DISCORD_BUCKETS: readonly DiscordBucketRule[] = [
  { routes: ["POST /channels/{channel}/messages"], per: "channel", limit: 5, windowMs: 5000 },
  { routes: ["PATCH /channels/{channel}/messages/{message}"], per: "channel", limit: 5, windowMs: 5000 },
];

export const DEFAULT_DISCORD_GLOBAL = { limit: 50, windowMs: 1000 } as const;

/** What a call met, on its record (`ApiCall.rateLimit`). */
export interface RateLimitRecord {
  /** The bucket's hash, or `"global"`. */
  bucket: string;
  limit: number;
  /** Requests left in the window after this one. */
  remaining: number;
  resetAfterMs: number;
  /** Set when the call was refused with 429: over its route's bucket (`user`) or over the global limit. */
  limited?: "user" | "global";
}

export interface RateLimitDecision {
  /** Headers for the answer (the route bucket's, when the route has one). */
  headers: Record<string, string>;
  record?: RateLimitRecord;
  /** When the call is over a limit: the 429 to send instead of running it. */
  refusal?: { headers: Record<string, string>; body: Record<string, unknown> };
}

interface Window {
  remaining: number;
  /** performance.now() at which the window ends. */
  resetAt: number;
}

interface Bucket {
  rule: DiscordBucketRule;
  hash: string;
}

export class DiscordRateLimiter {
  #buckets = new Map<string, Bucket>();
  #global: { limit: number; windowMs: number } | false = false;
  #windows = new Map<string, Window>();
  readonly #knownRoutes: ReadonlySet<string>;

  constructor(config: DiscordRateLimits | false, knownRoutes: Iterable<string>) {
    this.#knownRoutes = new Set(knownRoutes);
    this.configure(config);
  }

  /** Replaces the limits (`false`: no throttling at all) and forgets every window. */
  configure(config: DiscordRateLimits | false): void {
    this.#buckets.clear();
    this.#windows.clear();
    this.#global = config === false ? false : (config.global ?? DEFAULT_DISCORD_GLOBAL);
    if (config === false) return;
    for (const rule of config.buckets ?? DEFAULT_DISCORD_BUCKETS) {
      const bucket = { rule, hash: bucketHash(rule) };
      for (const route of rule.routes) {
        if (!this.#knownRoutes.has(route)) throw new Error(`fake Discord: no route ${route} to rate-limit`);
        this.#buckets.set(route, bucket);
      }
    }
  }

  /**
   * Counts a request against the global limit (when it carries the bot token) and its route's bucket, in that
   * order, as Discord does; the first limit it is over refuses it.
   */
  take(route: string, params: Record<string, string>, authenticated: boolean): RateLimitDecision {
    const now = performance.now();
    if (authenticated && this.#global) {
      const window = this.#count("global", this.#global, now);
      if (!window.admitted) return globalRefusal(this.#global.limit, window.resetAt - now);
    }
    const bucket = this.#buckets.get(route);
    if (!bucket) return { headers: {} };
    const major = bucket.rule.per ? (params[bucket.rule.per] ?? "") : "";
    const window = this.#count(`${bucket.hash}:${major}`, bucket.rule, now);
    const resetAfterMs = window.resetAt - now;
    const headers = bucketHeaders(bucket, window.remaining, resetAfterMs);
    const record: RateLimitRecord = {
      bucket: bucket.hash,
      limit: bucket.rule.limit,
      remaining: window.remaining,
      resetAfterMs,
    };
    if (window.admitted) return { headers, record };
    return {
      headers,
      record: { ...record, limited: "user" },
      refusal: {
        headers: { ...headers, "retry-after": retryAfterHeader(resetAfterMs), "x-ratelimit-scope": "user" },
        body: tooManyRequests(resetAfterMs, false),
      },
    };
  }

  /** One request into a fixed window that starts with its first request. */
  #count(key: string, limit: { limit: number; windowMs: number }, now: number) {
    let window = this.#windows.get(key);
    if (!window || now >= window.resetAt) {
      window = { remaining: limit.limit, resetAt: now + limit.windowMs };
      this.#windows.set(key, window);
    }
    const admitted = window.remaining > 0;
    if (admitted) window.remaining--;
    return { admitted, remaining: window.remaining, resetAt: window.resetAt };
  }
}

/** An opaque, stable bucket id, as Discord's `X-RateLimit-Bucket` is. */
function bucketHash(rule: DiscordBucketRule): string {
  return createHash("sha1").update(rule.routes.join("\n")).digest("hex").slice(0, 32);
}

const seconds = (ms: number) => (Math.max(0, ms) / 1000).toFixed(3);

/** Discord's `Retry-After` header is in whole seconds; the body's `retry_after` has the fraction. */
const retryAfterHeader = (ms: number) => String(Math.max(1, Math.ceil(ms / 1000)));

function bucketHeaders(bucket: Bucket, remaining: number, resetAfterMs: number): Record<string, string> {
  return {
    "x-ratelimit-limit": String(bucket.rule.limit),
    "x-ratelimit-remaining": String(remaining),
    "x-ratelimit-reset": seconds(Date.now() + resetAfterMs),
    "x-ratelimit-reset-after": seconds(resetAfterMs),
    "x-ratelimit-bucket": bucket.hash,
  };
}

function tooManyRequests(retryAfterMs: number, global: boolean): Record<string, unknown> {
  return {
    message: "You are being rate limited.",
    retry_after: Number(seconds(retryAfterMs)),
    global,
  };
}

function globalRefusal(limit: number, retryAfterMs: number): RateLimitDecision {
  return {
    headers: {},
    record: { bucket: "global", limit, remaining: 0, resetAfterMs: retryAfterMs, limited: "global" },
    refusal: {
      headers: {
        "retry-after": retryAfterHeader(retryAfterMs),
        "x-ratelimit-global": "true",
        "x-ratelimit-scope": "global",
      },
      body: tooManyRequests(retryAfterMs, true),
    },
  };
}
