import { performance } from "node:perf_hooks";

/**
 * Slack's Web API rate limits (docs.slack.dev, "Rate limits"), enforced by the fake Slack. Slack applies them per
 * method, per app, per workspace:
 *
 * - Tiers. Most methods have a tier: Tier 1 allows 1+ request per minute ("a small amount of burst behavior is
 *   tolerated"), Tier 2 20+, Tier 3 50+, Tier 4 100+, each "with bursts". The fake models a tier as a token bucket
 *   refilled at `perMinute` and holding at most `burst` requests; every call counts.
 * - chat.postMessage is a "special" method: "generally one message per second per channel", short bursts allowed.
 *   A token bucket per channel, refilled at `perSecond` and holding `burst`; only messages actually posted count.
 *
 * A call over a limit gets HTTP 429 `{ ok: false, error: "ratelimited" }` with `Retry-After` in whole seconds, and
 * nothing happens. The buckets run on real (monotonic) time, since clients wait in real time.
 */

export type SlackTier = 1 | 2 | 3 | 4;

export interface SlackTierLimit {
  /** Requests per minute, sustained. */
  perMinute: number;
  /** Requests that may come at once. */
  burst: number;
}

export interface SlackRateLimits {
  /** Merged over `DEFAULT_SLACK_TIERS`. */
  tiers?: Partial<Record<SlackTier, SlackTierLimit>>;
  /** Method → tier, merged over `DEFAULT_SLACK_METHOD_TIERS`; `null` leaves a method unlimited. */
  methods?: Record<string, SlackTier | null>;
  /** chat.postMessage per channel; default `DEFAULT_SLACK_POST_MESSAGE_LIMIT`; `false` for none. */
  postMessage?: { perSecond: number; burst: number } | false;
}

/** Slack's documented floor for each tier; the burst sizes are the fake's choice (Slack gives none). */
export const DEFAULT_SLACK_TIERS: Readonly<Record<SlackTier, SlackTierLimit>> = {
  1: { perMinute: 1, burst: 3 },
  2: { perMinute: 20, burst: 20 },
  3: { perMinute: 50, burst: 50 },
  4: { perMinute: 100, burst: 100 },
};

/** The tier of each method the fake implements, from each method's page in Slack's reference. */
export const DEFAULT_SLACK_METHOD_TIERS: Readonly<Record<string, SlackTier | null>> = {
  "apps.connections.open": 1,
  // "Special" in Slack's reference, with room for hundreds a minute; held to Tier 4 here.
  "auth.test": 4,
  // Special: its limit is per channel (below).
  "chat.postMessage": null,
  "chat.postEphemeral": 4,
  "chat.update": 3,
  "conversations.history": 3,
  "conversations.replies": 3,
  "files.completeUploadExternal": 4,
  "files.getUploadURLExternal": 4,
  "files.info": 4,
  "files.upload": 2,
  "reactions.add": 3,
  "reactions.remove": 2,
};

/** About one message per second per channel; the burst of 5 is the fake's choice ("short bursts >1 allowed"). */
export const DEFAULT_SLACK_POST_MESSAGE_LIMIT = { perSecond: 1, burst: 5 } as const;

export interface SlackRateLimitGrant {
  /** Set when the call is over a limit: answer 429 with this `Retry-After`, and do nothing. */
  refusal?: { scope: "method" | "channel"; retryAfterSeconds: number };
  /** Gives back what a post that did not happen took from its channel's allowance. */
  refund(): void;
}

/** A token bucket: `capacity` tokens, refilled continuously at `perMs`. */
class TokenBucket {
  readonly capacity: number;
  readonly perMs: number;
  #tokens: number;
  #at = performance.now();
  constructor(capacity: number, perMs: number) {
    this.capacity = capacity;
    this.perMs = perMs;
    this.#tokens = capacity;
  }

  /** Ms until a token is available (0: one is). */
  wait(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : (1 - this.#tokens) / this.perMs;
  }

  take(): void {
    this.#refill();
    this.#tokens -= 1;
  }

  give(): void {
    this.#tokens = Math.min(this.capacity, this.#tokens + 1);
  }

  #refill(): void {
    const now = performance.now();
    this.#tokens = Math.min(this.capacity, this.#tokens + (now - this.#at) * this.perMs);
    this.#at = now;
  }
}

interface ActiveLimits {
  tiers: Record<SlackTier, SlackTierLimit>;
  methods: Record<string, SlackTier | null>;
  postMessage: { perSecond: number; burst: number } | false;
}

const NO_GRANT: SlackRateLimitGrant = { refund: () => {} };

export class SlackRateLimiter {
  /** null: throttling is off. */
  #limits: ActiveLimits | null = null;
  #buckets = new Map<string, TokenBucket>();

  constructor(config: SlackRateLimits | false) {
    this.configure(config);
  }

  /** Replaces the limits (`false`: no throttling at all) and refills every bucket. */
  configure(config: SlackRateLimits | false): void {
    this.#limits =
      config === false
        ? null
        : {
            tiers: { ...DEFAULT_SLACK_TIERS, ...config.tiers },
            methods: { ...DEFAULT_SLACK_METHOD_TIERS, ...config.methods },
            postMessage: config.postMessage ?? DEFAULT_SLACK_POST_MESSAGE_LIMIT,
          };
    this.reset();
  }

  /** Refills every bucket (the fake's `reset()`). */
  reset(): void {
    this.#buckets.clear();
  }

  /**
   * Counts a call of `method` (posting to `channel`, for chat.postMessage) against its limits, or refuses it with
   * the wait Slack would give.
   */
  take(method: string, channel: string | undefined): SlackRateLimitGrant {
    if (!this.#limits) return NO_GRANT;
    const tierBucket = this.#tierBucket(this.#limits, method);
    const channelBucket =
      method === "chat.postMessage" && channel ? this.#channelBucket(this.#limits, channel) : undefined;
    const tierWait = tierBucket?.wait() ?? 0;
    if (tierWait > 0) return refusal("method", tierWait);
    const channelWait = channelBucket?.wait() ?? 0;
    if (channelWait > 0) return refusal("channel", channelWait);
    tierBucket?.take();
    channelBucket?.take();
    return { refund: () => channelBucket?.give() };
  }

  #tierBucket(limits: ActiveLimits, method: string): TokenBucket | undefined {
    const tier = limits.methods[method];
    const limit = tier ? limits.tiers[tier] : undefined;
    if (!limit) return undefined;
    return this.#bucket(`method:${method}`, limit.burst, limit.perMinute / 60_000);
  }

  #channelBucket(limits: ActiveLimits, channel: string): TokenBucket | undefined {
    const limit = limits.postMessage;
    if (!limit) return undefined;
    return this.#bucket(`channel:${channel}`, limit.burst, limit.perSecond / 1000);
  }

  #bucket(key: string, capacity: number, perMs: number): TokenBucket {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = new TokenBucket(capacity, perMs);
      this.#buckets.set(key, bucket);
    }
    return bucket;
  }
}

/** Slack's Retry-After is in whole seconds. */
function refusal(scope: "method" | "channel", waitMs: number): SlackRateLimitGrant {
  return { refusal: { scope, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) }, refund: () => {} };
}
