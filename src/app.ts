import path from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { sql } from "drizzle-orm";
import { AccessPolicy } from "./access.ts";
import type { Config } from "./config.ts";
import { PLATFORMS, type Platform } from "./domain.ts";
import { Engine, type EngineOptions } from "./engine/engine.ts";
import { HealthChecks } from "./health.ts";
import { type HttpRoute, operationalRoutes } from "./http/http-server.ts";
import type { Logger } from "./logger.ts";
import { Metrics } from "./metrics.ts";
import type { ImageProvider } from "./ports.ts";
import { createOpenAIImageProvider } from "./provider/openai-images.ts";
import { PgBossTurnQueue, type TurnQueueOptions } from "./queue/job-queue.ts";
import { FsBlobStore, S3BlobStore } from "./store/blob-store.ts";
import { PostgresClaims } from "./store/claim-store.ts";
import { PostgresConversationStore } from "./store/conversation-store.ts";
import { type DbHandle, openDatabase } from "./store/database.ts";
import { PostgresInbox } from "./store/inbox-store.ts";

export interface App {
  engine: Engine;
  store: PostgresConversationStore;
  /** Where adapters write platform events before acknowledging them. */
  inbox: PostgresInbox;
  /** Where the bot is enabled, and who administers it. */
  access: AccessPolicy;
  database: DbHandle;
  /** `GET /healthz` and `GET /metrics`, for whichever HTTP server the process runs. */
  routes: HttpRoute[];
  /**
   * What `/healthz` checks: `database` and `queue` from the start; the process adds its platform connections
   * (`health.add("slack", () => …)`), each a function answering whether it is up.
   */
  health: HealthChecks;
  /** The counters behind `/metrics`; adapters report their acknowledgements to it (`metrics` option). */
  metrics: Metrics;
  /**
   * Starts the workers for these platforms (all by default): their queued turns, including those a crash left
   * behind, begin to run. A process works only the platforms it can deliver to.
   */
  startWorkers(platforms?: readonly Platform[]): Promise<void>;
  /**
   * Stops taking turns from the queue and lets the running ones finish and be delivered for up to `graceMs`;
   * those still running then are handed back (they finish once after a restart). Adapters stay connected.
   */
  stopWorkers(graceMs: number): Promise<void>;
  /** Stops the workers (handing back what runs) and closes the database. */
  stop(): Promise<void>;
}

export interface AppOverrides {
  provider?: ImageProvider;
  queue?: Partial<TurnQueueOptions>;
  engine?: EngineOptions;
  /** How often the workers look for late deliveries that are due; every minute by default. */
  lateDeliverySweepMs?: number;
}

/**
 * The composition root: the only place that knows which implementation sits behind each port.
 * Opens the database (PGlite under DATA_DIR, or PostgreSQL), applies the migrations, and wires the engine.
 */
export async function createApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await database.migrate();
    const store = new PostgresConversationStore(database.db);
    const blobs = config.s3
      ? new S3BlobStore({
          bucket: config.s3.bucket,
          client: new S3Client({
            ...(config.s3.endpoint ? { endpoint: config.s3.endpoint } : {}),
            ...(config.s3.region ? { region: config.s3.region } : {}),
            forcePathStyle: config.s3.forcePathStyle,
          }),
        })
      : new FsBlobStore(path.join(config.dataDir, "blobs"));
    const provider =
      overrides.provider ??
      createOpenAIImageProvider(
        {
          apiKey: config.openai.apiKey ?? "",
          baseUrl: config.openai.baseUrl,
          imageModel: config.openai.imageModel,
          thinkModel: config.openai.thinkModel,
        },
        logger.child({ component: "openai" }),
      );
    const access = new AccessPolicy(config.access);
    const queue = new PgBossTurnQueue(
      { pglite: database.pglite, url: database.url },
      { concurrency: config.workerConcurrency, ...overrides.queue },
      logger.child({ component: "queue" }),
    );
    await queue.start();
    const metrics = new Metrics({ queueDepth: () => queue.depth(), logger });
    const health = new HealthChecks(logger.child({ component: "health" }));
    health.add("database", async () => {
      await database.db.execute(sql`select 1`);
      return true;
    });
    health.add("queue", () => queue.ready());
    const claims = new PostgresClaims(database.db);
    const engine = new Engine({
      store,
      claims,
      blobs,
      provider,
      queue,
      logger,
      metrics,
      options: {
        providerConcurrency: config.workerConcurrency,
        turnsPerUserHour: config.turnsPerUserHour,
        budgets: config.budgets,
        confirmAboveUsd: config.confirmAboveUsd,
        models: { image: config.openai.imageModel, think: config.openai.thinkModel },
        unlimited: (platform, userId) => access.isAdmin(platform, userId),
        ...overrides.engine,
      },
    });

    let stopped = false;
    let sweeper: NodeJS.Timeout | undefined;
    const stopSweeping = () => clearInterval(sweeper);
    return {
      engine,
      store,
      inbox: new PostgresInbox(database.db),
      access,
      database,
      routes: operationalRoutes({ health, metrics, logger, metricsToken: config.metricsToken }),
      health,
      metrics,
      async startWorkers(platforms = PLATFORMS) {
        await queue.work((job, attempt) => engine.runTurn(job, attempt), platforms);
        // Results a platform could not take for long (it was down) go out once it answers again, and a turn
        // the queue gave up on is finished instead of holding back its thread.
        sweeper = setInterval(() => {
          engine
            .retryLateDeliveries(platforms)
            .then(() => engine.finishAbandonedTurns(platforms))
            // A day on, whatever a claim guarded is recorded where it belongs (thread meta, turn_messages).
            .then(() => claims.pruneClaims(new Date(Date.now() - 24 * 3600_000)))
            .catch((error: unknown) => logger.warn({ err: error }, "sweep failed"));
        }, overrides.lateDeliverySweepMs ?? 60_000);
        sweeper.unref();
      },
      async stopWorkers(graceMs) {
        stopSweeping();
        await queue.stop(graceMs);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        stopSweeping();
        await queue.stop();
        await database.close();
      },
    };
  } catch (error) {
    await database.close().catch(() => {});
    throw error;
  }
}
