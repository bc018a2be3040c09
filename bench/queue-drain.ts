/**
 * How fast the turn queue drains a backlog (see "Queue backlog" in bench/README.md). JOBS jobs spread over THREADS
 * threads (default: one each) are enqueued before the workers start; each job takes ~20 ms, so with concurrency 4
 * the floor is JOBS / 4 × 20 ms. Before the fix in src/queue/job-queue.ts every worker slept out the 1 s poll interval
 * after each job, because pg-boss sends a NOTIFY only when a job is inserted.
 *
 * Usage: JOBS=40 [THREADS=4] node --import tsx bench/queue-drain.ts [postgres://…/scratch_db]   (no URL: in-memory PGlite)
 */

import { createLogger } from "../src/logger.ts";
import { PgBossTurnQueue } from "../src/queue/job-queue.ts";
import { openDatabase } from "../src/store/database.ts";

const url = process.argv[2];
const database = await openDatabase(url ? { databaseUrl: url } : {});
const queue = new PgBossTurnQueue(
  { pglite: database.pglite, url: database.url },
  { concurrency: 4 },
  createLogger("silent"),
);
await queue.start();
const jobs = Number(process.env.JOBS ?? 12);
const threads = Number(process.env.THREADS ?? jobs);
for (let i = 0; i < jobs; i++)
  await queue.enqueue({ turnId: `t${i}`, threadKey: `console:drain:${i % threads}` });
const start = performance.now();
let done = 0;
await new Promise<void>((resolve) => {
  void queue.work(async (job) => {
    await new Promise((r) => setTimeout(r, 20));
    done++;
    console.log(`${((performance.now() - start) / 1000).toFixed(2)} s  ${job.turnId} done (${done}/${jobs})`);
    if (done === jobs) resolve();
  });
});
console.log(
  `drained ${jobs} jobs of ~20 ms each in ${((performance.now() - start) / 1000).toFixed(1)} s with concurrency 4`,
);
await queue.stop(1000);
await database.close();
