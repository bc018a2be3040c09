import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { PLATFORMS, type Platform, type TurnKind, type TurnStatus } from "./domain.ts";
import type { Logger } from "./logger.ts";

/**
 * What the engine and the adapters report as their work happens. `Metrics` counts it for `/metrics`; anything
 * that is given none (tests, benchmarks) reports nothing. Labels are bounded: platforms, turn kinds, statuses
 * and error codes, never a user, a thread or a message.
 */
export interface WorkMetrics {
  /** A platform event was acknowledged `seconds` after it reached this process. */
  acknowledged(platform: Platform, seconds: number): void;
  /** A turn began its first run `seconds` after it was accepted. */
  queueWaited(platform: Platform, seconds: number): void;
  /** One provider call for a turn took `seconds`, whether it answered or failed. */
  providerCalled(kind: TurnKind, seconds: number): void;
  /** A provider call failed with this code (an `ErrorCode`: `rate_limited`, `moderation_blocked`, …). */
  providerFailed(code: string): void;
  /** A turn's outcome reached its platform in `seconds` (the platform's own calls). */
  delivered(platform: Platform, seconds: number): void;
  /** Deliveries that kept failing and now wait for the slow retry (the platform down for long). */
  deliveryDeferred(platform: Platform): void;
  /** A turn ended: succeeded, failed or canceled. */
  turnEnded(kind: TurnKind, platform: Platform, outcome: TurnStatus): void;
  /** A provider request settled in the ledger at this many dollars (billed, or charged at estimate). */
  spent(platform: Platform, usd: number): void;
}

export interface MetricsOptions {
  /** Jobs waiting in each platform's turn queue; read at most once per `queueDepthCacheMs`, at scrape time. */
  queueDepth?: () => Promise<Partial<Record<Platform, number>>>;
  queueDepthCacheMs?: number;
  logger?: Logger;
  /** Node's own process metrics (`process_*`, `nodejs_*`); on by default. */
  defaultMetrics?: boolean;
}

/** Slack wants an acknowledgement within 3 s, Discord an interaction's within 3 s. */
const ACK_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10];
const WAIT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
/** An image takes from seconds (low quality) to a couple of minutes (high, large, or with thinking). */
const PROVIDER_BUCKETS = [0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300];
const DELIVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * The process's Prometheus registry (its own, not prom-client's global one, so two apps in one process — tests —
 * do not share counters). Everything is counted as work happens; a scrape reads memory, except the queue depth,
 * which is one small read of pg-boss's queue table, cached so that a storm of scrapes costs one query.
 * Counters are per process: Prometheus sums them over the processes.
 */
export class Metrics implements WorkMetrics {
  readonly registry = new Registry();
  readonly #turns: Counter<"kind" | "platform" | "outcome">;
  readonly #ack: Histogram<"platform">;
  readonly #queueWait: Histogram<"platform">;
  readonly #provider: Histogram<"kind">;
  readonly #providerErrors: Counter<"code">;
  readonly #delivery: Histogram<"platform">;
  readonly #deferred: Counter<"platform">;
  readonly #spend: Counter<"platform">;
  readonly #options: MetricsOptions;
  #depthRead: { at: number; depth: Promise<Partial<Record<Platform, number>> | null> } | undefined;

  constructor(options: MetricsOptions = {}) {
    this.#options = options;
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#turns = new Counter({
      name: "threadcanvas_turns_total",
      help: "Turns that ended, by kind, platform and outcome (succeeded, failed, canceled).",
      labelNames: ["kind", "platform", "outcome"],
      registers,
    });
    this.#ack = new Histogram({
      name: "threadcanvas_ack_seconds",
      help: "From a platform event reaching the process to its acknowledgement.",
      labelNames: ["platform"],
      buckets: ACK_BUCKETS,
      registers,
    });
    this.#queueWait = new Histogram({
      name: "threadcanvas_queue_wait_seconds",
      help: "From a turn being accepted to its first run.",
      labelNames: ["platform"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.#provider = new Histogram({
      name: "threadcanvas_provider_seconds",
      help: "Time in one provider call for a turn (the SDK's own retries included), answered or failed.",
      labelNames: ["kind"],
      buckets: PROVIDER_BUCKETS,
      registers,
    });
    this.#providerErrors = new Counter({
      name: "threadcanvas_provider_errors_total",
      help: "Provider calls that failed, by error code.",
      labelNames: ["code"],
      registers,
    });
    this.#delivery = new Histogram({
      name: "threadcanvas_delivery_seconds",
      help: "Time to hand a finished turn to its platform (posts and uploads).",
      labelNames: ["platform"],
      buckets: DELIVERY_BUCKETS,
      registers,
    });
    this.#deferred = new Counter({
      name: "threadcanvas_deliveries_deferred_total",
      help: "Deliveries that kept failing and were put off to the slow retry (the platform down for long).",
      labelNames: ["platform"],
      registers,
    });
    this.#spend = new Counter({
      name: "threadcanvas_spend_usd_total",
      help: "Provider spend in US dollars, as each request settles in the ledger (unanswered ones at estimate).",
      labelNames: ["platform"],
      registers,
    });
    if (options.queueDepth) {
      const read = () => this.#queueDepth();
      new Gauge({
        name: "threadcanvas_queue_depth",
        help: "Turns waiting in each platform's queue (pg-boss's count, refreshed by its monitor).",
        labelNames: ["platform"],
        registers,
        async collect() {
          const depth = await read();
          if (!depth) return; // the last value stays; the failure is logged
          for (const platform of PLATFORMS) this.set({ platform }, depth[platform] ?? 0);
        },
      });
    }
  }

  /** The exposition format's content type, for the response header. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Everything in the exposition format, for `GET /metrics`. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  acknowledged(platform: Platform, seconds: number): void {
    this.#ack.observe({ platform }, seconds);
  }

  queueWaited(platform: Platform, seconds: number): void {
    this.#queueWait.observe({ platform }, Math.max(0, seconds));
  }

  providerCalled(kind: TurnKind, seconds: number): void {
    this.#provider.observe({ kind }, seconds);
  }

  providerFailed(code: string): void {
    this.#providerErrors.inc({ code });
  }

  delivered(platform: Platform, seconds: number): void {
    this.#delivery.observe({ platform }, seconds);
  }

  deliveryDeferred(platform: Platform): void {
    this.#deferred.inc({ platform });
  }

  turnEnded(kind: TurnKind, platform: Platform, outcome: TurnStatus): void {
    this.#turns.inc({ kind, platform, outcome });
  }

  spent(platform: Platform, usd: number): void {
    if (usd > 0) this.#spend.inc({ platform }, usd);
  }

  /** The cached depth, read again when older than the cache; concurrent scrapes share one read. */
  #queueDepth(): Promise<Partial<Record<Platform, number>> | null> {
    const source = this.#options.queueDepth;
    if (!source) return Promise.resolve(null);
    const now = Date.now();
    if (!this.#depthRead || now - this.#depthRead.at >= (this.#options.queueDepthCacheMs ?? 5_000)) {
      const depth = withinMs(source(), 2_000).catch((error: unknown) => {
        this.#options.logger?.warn({ err: error }, "could not read the queue depth for /metrics");
        return null;
      });
      this.#depthRead = { at: now, depth };
    }
    return this.#depthRead.depth;
  }
}

/** The promise's value, or a rejection after `ms`. */
async function withinMs<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
