import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { Engine, type EngineOptions } from "../../src/engine/engine.ts";
import type { ConversationStore, TurnEvent } from "../../src/ports.ts";
import { createOpenAIImageProvider } from "../../src/provider/openai-images.ts";
import { PgBossTurnQueue, type TurnQueueOptions } from "../../src/queue/job-queue.ts";
import { FsBlobStore } from "../../src/store/blob-store.ts";
import { PostgresClaims } from "../../src/store/claim-store.ts";
import { PostgresConversationStore } from "../../src/store/conversation-store.ts";
import { PostgresInbox } from "../../src/store/inbox-store.ts";
import { type FakeOpenAI, type FakeOpenAIOptions, startFakeOpenAI } from "../fakes/openai-server.ts";
import { openTestDatabase, type TestDatabase } from "./database.ts";

type Finished = Extract<TurnEvent, { type: "finished" }>;

/**
 * The real engine, store, blob store, pg-boss queue and openai SDK, wired as in production, against the fake
 * OpenAI server and a fresh test database (PGlite, or PostgreSQL when TEST_DATABASE_URL is set). Everything the
 * engine tells the "console" platform is recorded in `events`.
 */
export interface EngineHarness {
  fake: FakeOpenAI;
  database: TestDatabase;
  store: PostgresConversationStore;
  /** The inbox adapters under test write platform events to. */
  inbox: PostgresInbox;
  blobs: FsBlobStore;
  engine: Engine;
  events: TurnEvent[];
  /** Resolves with the delivered outcome of a turn (success or failure). */
  finished(turnId: string): Promise<Finished>;
  deliveries(turnId: string): Finished[];
  close(): Promise<void>;
}

export async function startEngineHarness(
  options: {
    concurrency?: number;
    engine?: EngineOptions;
    stream?: boolean;
    openai?: FakeOpenAIOptions;
    queue?: Partial<TurnQueueOptions>;
    /** Puts something between the engine and the real store (a store that fails at a chosen moment). */
    wrapStore?: (store: ConversationStore) => ConversationStore;
  } = {},
): Promise<EngineHarness> {
  const fake = await startFakeOpenAI(options.openai);
  const database = await openTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), "tc-engine-"));
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
  const store = new PostgresConversationStore(database.db);
  const blobs = new FsBlobStore(path.join(dataDir, "blobs"));
  const provider = createOpenAIImageProvider(
    { apiKey: fake.apiKey, baseUrl: fake.baseUrl, imageModel: "gpt-image-2", thinkModel: "gpt-5.5" },
    logger,
  );
  const queue = new PgBossTurnQueue(
    { pglite: database.pglite, url: database.databaseUrl },
    {
      concurrency: options.concurrency ?? 4,
      pollingIntervalSeconds: 0.5,
      retryDelaySeconds: 1,
      retryDelayMaxSeconds: 2,
      ...options.queue,
    },
    logger,
  );
  await queue.start();
  const engine = new Engine({
    store: options.wrapStore ? options.wrapStore(store) : store,
    claims: new PostgresClaims(database.db),
    blobs,
    provider,
    queue,
    logger,
    // As in the app: WORKER_CONCURRENCY sets both each platform's workers and the provider calls at once.
    options: { providerConcurrency: options.concurrency ?? 4, ...options.engine },
  });

  const events: TurnEvent[] = [];
  const waiters = new Map<string, Array<(event: Finished) => void>>();
  engine.observe("console", {
    progress: (event) => {
      events.push(event);
    },
    deliver: async (event) => {
      events.push(event);
      for (const resolve of waiters.get(event.turn.id) ?? []) resolve(event);
      waiters.delete(event.turn.id);
    },
  });
  await queue.work((job, attempt) => engine.runTurn(job, attempt));

  const deliveries = (turnId: string) =>
    events.filter((event): event is Finished => event.type === "finished" && event.turn.id === turnId);

  return {
    fake,
    database,
    store,
    inbox: new PostgresInbox(database.db),
    blobs,
    engine,
    events,
    deliveries,
    finished(turnId) {
      const [done] = deliveries(turnId);
      if (done) return Promise.resolve(done);
      return new Promise((resolve) => waiters.set(turnId, [...(waiters.get(turnId) ?? []), resolve]));
    },
    async close() {
      await queue.stop(2_000);
      await database.close();
      await fake.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
