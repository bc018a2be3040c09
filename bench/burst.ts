/**
 * A burst of /imagine through a chat adapter: N people send the command at the same moment. Measures what the
 * platform would see — how long each command waits for its acknowledgement (both platforms give up at 3 s) —
 * and whether, and how fast, every command is delivered. `slack-bench.ts` and `discord-bench.ts` supply the
 * platform (the real adapter against the fake platform from test/fakes); this file runs the rest: the app built
 * by createApp as `npm start` builds it, the instant provider (1024×1024 PNGs), the runs and the table. It
 * prints figures and asserts nothing.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Logger } from "../src/logger.ts";
import type { ConversationEngine, Inbox } from "../src/ports.ts";
import { loadFixture } from "./fixtures.ts";
import {
  createScratchDatabase,
  dropScratchDatabase,
  note,
  openBenchApp,
  serverVersion,
  summarize,
} from "./harness.ts";
import { InstantImageProvider } from "./instant-provider.ts";
import { fmt } from "./report.ts";

/** One platform's side of the burst. */
export interface BurstPlatform {
  /** "Slack", "Discord". */
  name: string;
  /** Starts the fake platform and the adapter on `engine`, for these users. */
  start(
    app: { engine: ConversationEngine; inbox: Inbox; logger: Logger },
    users: readonly string[],
  ): Promise<BurstDriver>;
}

export interface BurstDriver {
  /**
   * Sends one /imagine per user at once; resolves with each acknowledgement's latency in ms (Infinity when the
   * fake gave up waiting) and whether it missed the platform's 3 s.
   */
  fire(run: number): Promise<Array<{ ms: number; late: boolean }>>;
  /** How many of this run's commands have been delivered so far (polled). */
  delivered(): number;
  /** Forgets the previous run's messages. */
  reset(): void;
  stop(): Promise<void>;
}

export async function runBurstBench(platform: BurstPlatform, script: string): Promise<void> {
  const { values } = parseArgs({
    options: {
      burst: { type: "string", default: process.env.BENCH_BURST ?? "100" },
      runs: { type: "string", default: process.env.BENCH_RUNS ?? "3" },
      delay: { type: "string", default: process.env.BENCH_DELAY ?? "0" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `npm run ${script} -- [--burst N=100] [--runs R=3] [--delay providerMs=0]\n` +
        "BENCH_DATABASE_URL=postgres://… runs on a scratch database on that server instead of PGlite.\n",
    );
    return;
  }
  const burst = Number(values.burst);
  const runs = Number(values.runs);
  const delayMs = Number(values.delay);
  const adminUrl = process.env.BENCH_DATABASE_URL?.trim() || undefined;

  const dataDir = await mkdtemp(path.join(os.tmpdir(), `tc-${platform.name.toLowerCase()}-bench-`));
  const scratch = adminUrl
    ? `tc_bench_${randomBytes(4).toString("hex")}_${platform.name.toLowerCase()}`
    : undefined;
  const databaseUrl = adminUrl && scratch ? await createScratchDatabase(adminUrl, scratch) : undefined;
  const provider = new InstantImageProvider({ fixtures: [await loadFixture(1024, 1024)], delayMs });
  const bench = await openBenchApp({
    dataDir,
    databaseUrl,
    provider,
    concurrency: undefined,
    logLevel: "info",
  });
  const users = Array.from({ length: burst }, (_, i) => `bench${i}`);
  const driver = await platform.start(
    { engine: bench.app.engine, inbox: bench.app.inbox, logger: bench.logger },
    users,
  );
  await bench.app.startWorkers();

  const backend = databaseUrl
    ? `PostgreSQL ${await serverVersion(databaseUrl)} (scratch database)`
    : "PGlite";
  const cpu = os.cpus()[0]?.model.replace(/\s+/g, " ").trim() ?? "?";
  console.log(
    `threadcanvas ${platform.name} benchmark — ${backend}, WORKER_CONCURRENCY ${bench.config.workerConcurrency}`,
  );
  console.log(
    `machine: ${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}, ${new Date().toISOString()}`,
  );
  console.log(
    `provider: in-process, 1024x1024 PNG, ${delayMs ? `holds each call ${delayMs} ms` : "answers at once"}\n`,
  );
  console.log(`${burst} /imagine at once, from ${burst} users; times in ms from the burst's start`);
  console.log(
    "run   ack p50    p99    max  late  delivered  all delivered in  first delivered  p50 delivered",
  );

  try {
    for (let run = 1; run <= runs; run++) {
      driver.reset();
      const start = performance.now();
      const acks = await driver.fire(run);
      // Delivery times: when the count of delivered commands went up, from the burst's start.
      const doneAt: number[] = [];
      const deadline = performance.now() + 10 * 60_000;
      while (doneAt.length < burst && performance.now() < deadline) {
        const now = driver.delivered();
        while (doneAt.length < now) doneAt.push(performance.now() - start);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const ack = summarize(acks.map((a) => a.ms));
      const late = acks.filter((a) => a.late).length;
      const delivered = summarize(doneAt);
      console.log(
        [
          String(run).padEnd(4),
          fmt(ack.p50).padStart(8),
          fmt(ack.p99).padStart(6),
          fmt(ack.max).padStart(6),
          String(late).padStart(5),
          `${doneAt.length}/${burst}`.padStart(10),
          fmt(delivered.max).padStart(17),
          fmt(delivered.min).padStart(16),
          fmt(delivered.p50).padStart(14),
        ].join(" "),
      );
      note(`run ${run}: ${doneAt.length}/${burst} delivered`);
    }
  } finally {
    await driver.stop();
    await bench.app.stop();
    if (adminUrl && scratch) await dropScratchDatabase(adminUrl, scratch);
    await rm(dataDir, { recursive: true, force: true });
  }
}
