import path from "node:path";
import pg from "pg";
import pino from "pino";
import { type App, createApp } from "../src/app.ts";
import { type Config, loadConfig } from "../src/config.ts";
import type { Turn } from "../src/domain.ts";
import { createLogger, type Logger } from "../src/logger.ts";
import type { ImageProvider, Intent, TurnEvent, TurnObserver } from "../src/ports.ts";

/** When this process started measuring; progress notes go to stderr so that `--json` keeps stdout clean. */
export const startedAt = performance.now();

export function note(message: string): void {
  process.stderr.write(
    `[bench ${((performance.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${message}\n`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------------------

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles; NaN everywhere for an empty list. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const at = (p: number) =>
    n === 0 ? Number.NaN : (sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number);
  return {
    n,
    mean: n === 0 ? Number.NaN : sorted.reduce((sum, value) => sum + value, 0) / n,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    min: n === 0 ? Number.NaN : (sorted[0] as number),
    max: n === 0 ? Number.NaN : (sorted[n - 1] as number),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Following turns through the observer
// ---------------------------------------------------------------------------------------------------------

/** performance.now() timestamps of one turn's life, as the benchmark sees it. */
export interface TurnTiming {
  turnId: string;
  /** Known once the benchmark or an event has seen the turn itself. */
  prompt?: string;
  kind?: Turn["kind"];
  submitStart?: number;
  submitEnd?: number;
  /** The queue handed the job to `engine.runTurn`. */
  handlerStart?: number;
  handlerEnd?: number;
  /** The engine's `running` progress event (after `startTurn`). */
  running?: number;
  /** The engine called `deliver` (the outcome is stored; `markDelivered` follows). */
  finished?: number;
  status?: Turn["status"];
  errorCode?: string | null;
  retries: number;
}

/** The console platform's observer: records when each turn runs and finishes, and lets the benchmark wait. */
export class TurnTracker implements TurnObserver {
  readonly timings = new Map<string, TurnTiming>();
  readonly #waiters = new Map<string, Array<() => void>>();

  timing(turnId: string, turn?: Pick<Turn, "prompt" | "kind">): TurnTiming {
    let timing = this.timings.get(turnId);
    if (!timing) {
      timing = { turnId, retries: 0 };
      this.timings.set(turnId, timing);
    }
    if (turn) {
      timing.prompt ??= turn.prompt;
      timing.kind ??= turn.kind;
    }
    return timing;
  }

  progress(event: Exclude<TurnEvent, { type: "finished" }>): void {
    const now = performance.now();
    const timing = this.timing(event.turn.id, event.turn);
    if (event.type === "running") timing.running ??= now;
    if (event.type === "retrying") timing.retries++;
  }

  async deliver(event: Extract<TurnEvent, { type: "finished" }>): Promise<void> {
    const timing = this.timing(event.turn.id, event.turn);
    timing.finished ??= performance.now();
    timing.status = event.turn.status;
    timing.errorCode = event.turn.errorCode;
    for (const wake of this.#waiters.get(event.turn.id) ?? []) wake();
    this.#waiters.delete(event.turn.id);
  }

  waitFinished(turnId: string): Promise<void> {
    if (this.timings.get(turnId)?.finished !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#waiters.get(turnId) ?? [];
      list.push(resolve);
      this.#waiters.set(turnId, list);
    });
  }

  async waitAll(turnIds: readonly string[]): Promise<void> {
    await Promise.all(turnIds.map((id) => this.waitFinished(id)));
  }
}

// ---------------------------------------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------------------------------------

export interface BenchApp {
  app: App;
  config: Config;
  tracker: TurnTracker;
  logger: Logger;
  /** `engine.submit`, timed from the call to its answer. */
  submit(intent: Intent): Promise<{ turn: Turn; ms: number }>;
}

export interface OpenBenchAppOptions {
  dataDir: string;
  databaseUrl: string | undefined;
  provider: ImageProvider;
  /** Worker concurrency; undefined keeps the config default (WORKER_CONCURRENCY's default). */
  concurrency: number | undefined;
  /** pino level for the app's log, which goes to `<dataDir>/bench.log` (as `npm start` logs to a file). */
  logLevel: string;
}

/** `createApp` as `npm start` builds it, with the benchmark's provider and an observer for the console platform. */
export async function openBenchApp(options: OpenBenchAppOptions): Promise<BenchApp> {
  const env: NodeJS.ProcessEnv = { DATA_DIR: options.dataDir, LOG_LEVEL: options.logLevel };
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
  if (options.concurrency !== undefined) env.WORKER_CONCURRENCY = String(options.concurrency);
  const config = loadConfig(env);
  const logger = createLogger(
    config.logLevel,
    pino.destination({ dest: path.join(options.dataDir, "bench.log"), mkdir: true, sync: false }),
  );
  const app = await createApp(config, logger, {
    provider: options.provider,
    ...(options.concurrency === undefined ? {} : { queue: { concurrency: options.concurrency } }),
  });
  const tracker = new TurnTracker();
  app.engine.observe("console", tracker);

  // Time the queue's whole handler too (startTurn … markDelivered). startWorkers looks runTurn up on each job.
  const runTurn = app.engine.runTurn.bind(app.engine);
  app.engine.runTurn = async (job, attempt) => {
    const timing = tracker.timing(job.turnId);
    timing.handlerStart ??= performance.now();
    try {
      await runTurn(job, attempt);
    } finally {
      timing.handlerEnd = performance.now();
    }
  };

  return {
    app,
    config,
    tracker,
    logger,
    async submit(intent) {
      const start = performance.now();
      const { turn } = await app.engine.submit(intent);
      const end = performance.now();
      const timing = tracker.timing(turn.id, turn);
      timing.submitStart = start;
      timing.submitEnd = end;
      return { turn, ms: end - start };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// A scratch database on a PostgreSQL server
// ---------------------------------------------------------------------------------------------------------

/** Creates database `name` on the server of `adminUrl` and returns a URL for it. */
export async function createScratchDatabase(adminUrl: string, name: string): Promise<string> {
  await withClient(adminUrl, (client) => client.query(`create database ${quoteIdent(name)}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropScratchDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, (client) =>
    client.query(`drop database if exists ${quoteIdent(name)} with (force)`),
  );
}

export async function serverVersion(url: string): Promise<string> {
  return withClient(url, async (client) => {
    const result = await client.query<{ v: string }>("select current_setting('server_version') as v");
    return result.rows[0]?.v ?? "?";
  });
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: "threadcanvas-bench" });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

function quoteIdent(name: string): string {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unexpected database name ${name}`);
  return `"${name}"`;
}
