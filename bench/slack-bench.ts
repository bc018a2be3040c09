/**
 * Slack under a burst: N people run /imagine at the same moment. Measures what Slack would see — how long each
 * signed request waits for its acknowledgement (Slack gives up at 3 s) — and whether, and how fast, every
 * command is delivered (root message status "Done", image uploaded into its thread).
 *
 * The real Bolt app and SlackAdapter over HTTP, against the fake Slack from test/fakes, with the app built by
 * createApp as `npm start` builds it and the instant provider of the engine benchmark (1024×1024 PNGs). It prints
 * figures and asserts nothing.
 *
 *   npm run bench:slack                                   # PGlite under a temporary DATA_DIR
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:slack   # a scratch database there
 *   npm run bench:slack -- --burst 200 --runs 5 --delay 2000
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { SlackAdapter } from "../adapters/slack/slack-adapter.ts";
import { startFakeSlack } from "../test/fakes/slack-server.ts";
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
    "npm run bench:slack -- [--burst N=100] [--runs R=3] [--delay providerMs=0]\n" +
      "BENCH_DATABASE_URL=postgres://… runs on a scratch database on that server instead of PGlite.\n",
  );
  process.exit(0);
}
const burst = Number(values.burst);
const runs = Number(values.runs);
const delayMs = Number(values.delay);
const adminUrl = process.env.BENCH_DATABASE_URL?.trim() || undefined;
const CHANNEL = "C0001";

const dataDir = await mkdtemp(path.join(os.tmpdir(), "tc-slack-bench-"));
const scratch = adminUrl ? `tc_bench_${randomBytes(4).toString("hex")}_slack` : undefined;
const databaseUrl = adminUrl && scratch ? await createScratchDatabase(adminUrl, scratch) : undefined;
const slack = await startFakeSlack();
const provider = new InstantImageProvider({ fixtures: [await loadFixture(1024, 1024)], delayMs });
const bench = await openBenchApp({
  dataDir,
  databaseUrl,
  provider,
  concurrency: undefined,
  logLevel: "info",
});
const adapter = new SlackAdapter({
  engine: bench.app.engine,
  logger: bench.logger,
  botToken: slack.botToken,
  signingSecret: slack.signingSecret,
  apiUrl: slack.apiUrl,
  port: 0,
});
const url = `http://127.0.0.1:${await adapter.start()}/slack/events`;
slack.setEchoTarget(url);
await bench.app.startWorkers();
const users = Array.from({ length: burst }, (_, i) => `U8${String(i).padStart(5, "0")}`);
for (const [i, user] of users.entries()) slack.addUser(user, `bench${i}`);

const backend = databaseUrl ? `PostgreSQL ${await serverVersion(databaseUrl)} (scratch database)` : "PGlite";
const cpu = os.cpus()[0]?.model.replace(/\s+/g, " ").trim() ?? "?";
console.log(
  `threadcanvas Slack benchmark — ${backend}, WORKER_CONCURRENCY ${bench.config.workerConcurrency}`,
);
console.log(
  `machine: ${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}, ${new Date().toISOString()}`,
);
console.log(
  `provider: in-process, 1024x1024 PNG, ${delayMs ? `holds each call ${delayMs} ms` : "answers at once"}\n`,
);
console.log(`${burst} /imagine at once, from ${burst} users; times in ms from the burst's start`);
console.log("run   ack p50    p99    max  late  delivered  all delivered in  first delivered  p50 delivered");

try {
  for (let run = 1; run <= runs; run++) {
    slack.reset();
    const start = performance.now();
    const doneAt = new Map<string, number>();
    const acks = await Promise.all(
      users.map((user, i) =>
        slack.sendSlashCommand(url, {
          text: `bench run ${run} poster ${i} --quality low`,
          channel_id: CHANNEL,
          user_id: user,
        }),
      ),
    );
    // Root messages are posted just after each acknowledgement; a root's status says "Done" once delivered.
    const deadline = performance.now() + 10 * 60_000;
    while (doneAt.size < burst && performance.now() < deadline) {
      for (const root of slack.messages(CHANNEL)) {
        if (root.user === slack.botUserId && !doneAt.has(root.ts) && root.text.includes("Done"))
          doneAt.set(root.ts, performance.now() - start);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const ack = summarize(acks.map((a) => a.latencyMs ?? Number.POSITIVE_INFINITY));
    const late = acks.filter((a) => !a.ok).length;
    const delivered = summarize([...doneAt.values()]);
    console.log(
      [
        String(run).padEnd(4),
        fmt(ack.p50).padStart(8),
        fmt(ack.p99).padStart(6),
        fmt(ack.max).padStart(6),
        String(late).padStart(5),
        `${doneAt.size}/${burst}`.padStart(10),
        fmt(delivered.max).padStart(17),
        fmt(delivered.min).padStart(16),
        fmt(delivered.p50).padStart(14),
      ].join(" "),
    );
    note(`run ${run}: ${doneAt.size}/${burst} delivered`);
  }
} finally {
  await adapter.stop();
  await bench.app.stop();
  await slack.close();
  if (adminUrl && scratch) await dropScratchDatabase(adminUrl, scratch);
  await rm(dataDir, { recursive: true, force: true });
}
