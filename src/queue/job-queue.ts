import type { PGlite } from "@electric-sql/pglite";
import { fromPglite, PgBoss } from "pg-boss";
import { PLATFORMS, type Platform, platformOf } from "../domain.ts";
import type { Logger } from "../logger.ts";
import type { JobAttempt, SqlExecutor, TurnJob, TurnQueue } from "../ports.ts";

/**
 * Returns normally when the job is finished (succeeded or failed for good); throws to have it run again later
 * with backoff. The handler decides which: only retryable errors with attempts left should throw.
 */
export type TurnJobHandler = (job: TurnJob, attempt: JobAttempt) => Promise<void>;

export interface TurnQueueOptions {
  /**
   * How many turns of each platform this process works at once (one thread is always one at a time). Each
   * platform has its own workers, so turns stuck delivering to a platform that is down never hold the workers
   * another platform needs; how many OpenAI calls run at once is the engine's limit.
   */
  concurrency: number;
  /**
   * A worker that stops heartbeating for this long is presumed dead and its turn runs again. pg-boss's
   * minimum is 10 s; its monitor notices on its next pass (`monitorIntervalSeconds`).
   */
  heartbeatSeconds?: number;
  monitorIntervalSeconds?: number;
  /** First retry delay in seconds; doubles (with jitter) up to `retryDelayMaxSeconds`. */
  retryDelaySeconds?: number;
  retryDelayMaxSeconds?: number;
  pollingIntervalSeconds?: number;
  /** Retries before pg-boss gives a job up (tests make it small). */
  retryLimit?: number;
}

/**
 * One queue per platform, so a process works only the turns it can deliver: a console session on the same
 * database leaves Slack's turns to the Slack bot, and separate Slack and Discord processes do not take each
 * other's turns (which they could draw, but not deliver).
 */
export function turnQueueName(platform: Platform): string {
  return `turns-${platform}`;
}

/**
 * Safety net only: the engine gives up on a turn after its own attempt limit and completes the job normally,
 * because under `key_strict_fifo` a job that ends `failed` holds back every later turn of its thread. What still
 * ends failed (a turn handed back at twenty shutdowns in a row) is taken out by `takeAbandoned`.
 */
const PG_BOSS_RETRY_LIMIT = 20;

/**
 * Durable per-thread FIFO on pg-boss, in the same database as the store (PGlite in-process, or PostgreSQL).
 * `key_strict_fifo` keyed by thread runs one turn per thread at a time, in order; other threads run in
 * parallel, up to `concurrency` per platform. Jobs are sent inside the store's transaction, so a turn and its
 * job exist together.
 */
export class PgBossTurnQueue implements TurnQueue {
  readonly #boss: PgBoss;
  readonly #options: Required<TurnQueueOptions>;
  readonly #logger: Logger;
  /** Handlers running now, so `stop` can wait for them. */
  readonly #running = new Set<Promise<void>>();
  /** Aborted when `stop`'s grace runs out: the turns still running hand themselves back. */
  readonly #stopping = new AbortController();
  readonly #working = new Set<Platform>();
  #started = false;

  constructor(database: { pglite?: PGlite; url?: string }, options: TurnQueueOptions, logger: Logger) {
    this.#options = {
      heartbeatSeconds: 10,
      monitorIntervalSeconds: 5,
      retryDelaySeconds: 2,
      retryDelayMaxSeconds: 60,
      pollingIntervalSeconds: 1,
      retryLimit: PG_BOSS_RETRY_LIMIT,
      ...options,
    };
    this.#logger = logger;
    const maintenance = {
      monitorIntervalSeconds: this.#options.monitorIntervalSeconds,
      superviseIntervalSeconds: this.#options.monitorIntervalSeconds,
      // pg-boss checks and persists warnings we surface through the logger instead.
      persistWarnings: false,
    };
    if (database.pglite) {
      this.#boss = new PgBoss({
        db: fromPglite(database.pglite),
        backend: "pglite",
        useListenNotify: true,
        ...maintenance,
      });
    } else if (database.url) {
      this.#boss = new PgBoss({
        connectionString: database.url,
        max: Math.max(4, this.#options.concurrency + 2),
        useListenNotify: true,
        application_name: "threadcanvas-jobs",
        ...maintenance,
      });
    } else {
      throw new Error("PgBossTurnQueue needs a PGlite instance or a PostgreSQL URL");
    }
    this.#boss.on("error", (error) => this.#logger.error({ err: error }, "job queue error"));
    this.#boss.on("warning", (warning) => this.#logger.warn({ warning }, "job queue warning"));
  }

  /** Installs or upgrades pg-boss's own schema (`pgboss`) and the turn queues. */
  async start(): Promise<void> {
    if (this.#started) return;
    await this.#boss.start();
    const queue = {
      policy: "key_strict_fifo" as const,
      notify: true,
      retryLimit: this.#options.retryLimit,
      retryDelay: this.#options.retryDelaySeconds,
      retryBackoff: true,
      retryDelayMax: this.#options.retryDelayMaxSeconds,
      heartbeatSeconds: this.#options.heartbeatSeconds,
      // Heartbeats catch a dead worker; this only bounds a live but stuck one.
      expireInSeconds: 30 * 60,
    };
    for (const platform of PLATFORMS) {
      const name = turnQueueName(platform);
      if (await this.#boss.getQueue(name)) {
        const { policy: _fixedAtCreation, ...changeable } = queue;
        await this.#boss.updateQueue(name, changeable);
      } else {
        await this.#boss.createQueue(name, queue);
      }
    }
    this.#started = true;
  }

  /** Enqueues a turn. Pass the store's transaction so the job commits (or rolls back) with the turn. */
  async enqueue(job: TurnJob, tx?: SqlExecutor): Promise<void> {
    const id = await this.#boss.send(turnQueueName(platformOf(job.threadKey)), job, {
      singletonKey: job.threadKey,
      ...(tx ? { db: tx } : {}),
    });
    if (id === null) throw new Error(`job queue refused turn ${job.turnId}`);
  }

  /**
   * Runs the turns of these platforms (all by default) with `handler`, at most `concurrency` of each platform
   * at once. The handler's signal aborts when the job's claim is lost or when `stop` runs out of grace.
   */
  async work(handler: TurnJobHandler, platforms: readonly Platform[] = PLATFORMS): Promise<void> {
    for (const platform of platforms) {
      this.#working.add(platform);
      await this.#boss.work<TurnJob>(
        turnQueueName(platform),
        {
          localConcurrency: this.#options.concurrency,
          batchSize: 1,
          pollingIntervalSeconds: this.#options.pollingIntervalSeconds,
          // NOTIFY wakes workers for new jobs only. A retry becomes fetchable when its delay passes without any
          // notification, so the backstop poll stays short.
          notifyPollingIntervalSeconds: this.#options.pollingIntervalSeconds,
        },
        async (jobs) => {
          try {
            for (const job of jobs) {
              const signal = AbortSignal.any([job.signal, this.#stopping.signal]);
              const running = handler(job.data, { retryCount: job.retryCount, signal });
              const tracked = running.then(
                () => {},
                () => {},
              );
              this.#running.add(tracked);
              try {
                await running;
              } finally {
                this.#running.delete(tracked);
              }
            }
          } finally {
            this.#fetchAgainWhenDone();
          }
        },
      );
    }
  }

  /**
   * Jobs of these platforms that pg-boss gave up on (failed past their retries), removed from the queue: each
   * held back every later turn of its thread, which now run. The caller finishes their turns.
   */
  async takeAbandoned(platforms: readonly Platform[]): Promise<TurnJob[]> {
    const taken: TurnJob[] = [];
    for (const platform of platforms) {
      const name = turnQueueName(platform);
      for (const key of await this.#boss.getBlockedKeys(name)) {
        const failed = (await this.#boss.findJobs<TurnJob>(name, { key })).filter(
          (job) => job.state === "failed",
        );
        if (failed.length === 0) continue;
        await this.#boss.deleteJob(
          name,
          failed.map((job) => job.id),
        );
        taken.push(...failed.map((job) => job.data));
        this.#logger.warn({ thread: key, jobs: failed.length }, "removed jobs the queue gave up on");
      }
    }
    return taken;
  }

  /**
   * For `/healthz`: started, and pg-boss answers on its own connection (a one-row read of its queue table; every
   * process creates all the platforms' queues). Throws when it cannot answer.
   */
  async ready(): Promise<boolean> {
    if (!this.#started) return false;
    return (await this.#boss.getQueue(turnQueueName("console"))) !== null;
  }

  /**
   * Turns waiting in each platform's queue (queued: ready, retrying later, or behind their thread's running turn).
   * pg-boss keeps these counts in its queue table, refreshed by its monitor every `monitorIntervalSeconds`, so
   * this is one small read, never a count over the jobs.
   */
  async depth(): Promise<Record<Platform, number>> {
    const queues = await this.#boss.getQueues(PLATFORMS.map(turnQueueName));
    const depth = {} as Record<Platform, number>;
    for (const platform of PLATFORMS)
      depth[platform] = queues.find((queue) => queue.name === turnQueueName(platform))?.queuedCount ?? 0;
    return depth;
  }

  /**
   * A completed job can unblock the next turn of its thread (key_strict_fifo), and a backlog may be waiting,
   * but pg-boss sends no NOTIFY on completion: the worker would sleep out its poll interval before fetching
   * again, capping a backlog at `concurrency` turns per second. A notified worker skips that one sleep, so
   * marking every busy worker here (its job is still running; pg-boss completes it after we return) makes each
   * fetch again the moment its job is completed. An empty fetch then sleeps as usual.
   */
  #fetchAgainWhenDone(): void {
    for (const worker of this.#boss.getWipData()) {
      if (worker.name.startsWith("turns-") && worker.count > 0) this.#boss.notifyWorker(worker.id);
    }
  }

  /**
   * Stops fetching; lets the turns in progress finish for up to `graceMs`; then aborts the rest, which hand
   * themselves back (they run again after a restart), and waits up to `settleMs` for them to save what they
   * have; then closes pg-boss's connections.
   */
  async stop(graceMs = 10_000, settleMs = 15_000): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    await Promise.all(
      [...this.#working].map((platform) => this.#boss.offWork(turnQueueName(platform), { wait: false })),
    );
    if (!(await settledWithin(this.#running, graceMs))) {
      this.#logger.warn({ turns: this.#running.size }, "stopping: handing back the turns still running");
      this.#stopping.abort(new Error("shutting down; the turn runs again after the restart"));
      await settledWithin(this.#running, settleMs);
    }
    await this.#boss.stop({ graceful: true, timeout: 1_000, close: true });
  }
}

/** Whether every promise in the set settled within `ms` (the set may change while waiting). */
async function settledWithin(running: ReadonlySet<Promise<void>>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (running.size > 0) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(running),
      new Promise((resolve) => {
        timer = setTimeout(resolve, left);
      }),
    ]);
    clearTimeout(timer);
  }
  return true;
}
