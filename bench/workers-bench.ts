/**
 * `npm run bench:workers` — N worker processes on one PostgreSQL database (issue 10): turns per second for each N
 * with the instant provider, and the acknowledgement latency (`engine.submit`) of an ingress process meanwhile.
 * The figures, and how to read them: "Several worker processes" in bench/README.md.
 *
 * Per N: a scratch database and DATA_DIR, one ingress child (createApp, no workers) that submits, and N worker
 * children (`app.startWorkers(["console"])`; the console observer of `openBenchApp` takes their deliveries).
 * 1. The ingress queues a backlog: --turns turns over --threads threads, a generate and then edits, with 1024x1024
 *    PNGs (small, so that the figure is the engine and the queue more than sharp and blob writes).
 * 2. The workers start and drain it. Meanwhile the ingress submits a probe (a generate in a new thread) every
 *    --probe-ms, one at a time: their latency is the acknowledgement figure.
 * 3. turns/s = turns delivered / (first turn started → last delivered), on the database's clock.
 * With --live, step 1 runs while the workers run, as when commands keep arriving.
 * The children share the DATA_DIR: a worker reads base images that others stored (content-addressed files, written
 * by rename, so safe across processes), and they all log to bench.log in it.
 */
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pLimit from "p-limit";
import pg from "pg";
import type { Intent } from "../src/ports.ts";
import { redactDatabaseUrl } from "../src/store/database.ts";
import { loadFixture } from "./fixtures.ts";
import {
  createScratchDatabase,
  dropScratchDatabase,
  note,
  openBenchApp,
  type Summary,
  serverVersion,
  summarize,
} from "./harness.ts";
import { InstantImageProvider } from "./instant-provider.ts";
import { fmt } from "./report.ts";

const HELP = `usage: npm run bench:workers -- [options]    (each option also reads BENCH_<NAME>, e.g. BENCH_TURNS=800)
  --workers <list>      worker process counts, one row each (default 1,2,4)
  --turns <n>           backlog turns (default 400) over --threads threads (default 100): a generate, then edits
  --in-flight <n>       backlog submits the ingress keeps in flight (default 20)
  --probe-ms <ms>       one acknowledgement probe this often while the backlog drains (default 100)
  --live                submit the backlog while the workers run (default: queue it first, then start them)
  --concurrency <n>     WORKER_CONCURRENCY of each worker process (default: the app's, 4)
  --database-url <url>  PostgreSQL server (env BENCH_DATABASE_URL; default postgres://postgres@127.0.0.1:5432/postgres)
  --log-level <level>   the app's pino level; the log goes to the temp DATA_DIR (default info)
  --timeout <s>         give up on a worker count after this long (default 300)
  --keep                keep the temp DATA_DIR and the scratch databases
  --json                print the figures as JSON`;

type Options = ReturnType<typeof parseOptions>;

function parseOptions(argv: string[]) {
  const strings = "workers turns threads in-flight probe-ms concurrency database-url log-level timeout".split(
    " ",
  );
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries([
      ...strings.map((name) => [name, { type: "string" }]),
      ...["live", "keep", "json", "help"].map((name) => [name, { type: "boolean" }]),
    ]) as Record<string, { type: "string" | "boolean" }>,
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  const env = (name: string) => process.env[`BENCH_${name.toUpperCase().replaceAll("-", "_")}`];
  const text = (name: string) => (typeof values[name] === "string" ? values[name] : env(name)) || undefined;
  const int = (name: string, fallback: number, raw = text(name)) => {
    const value = Number(raw ?? fallback);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a whole number >= 1`);
    return value;
  };
  const flag = (name: string) => values[name] === true || /^(1|true|yes)$/i.test(env(name) ?? "");
  const options = {
    workers: (text("workers") ?? "1,2,4").split(",").map((n) => int("workers", 1, n)),
    turns: int("turns", 400),
    threads: int("threads", 100),
    inFlight: int("in-flight", 20),
    probeMs: int("probe-ms", 100),
    concurrency: text("concurrency") ? int("concurrency", 4) : undefined,
    databaseUrl: text("database-url") ?? "postgres://postgres@127.0.0.1:5432/postgres",
    logLevel: text("log-level") ?? "info",
    timeoutSeconds: int("timeout", 300),
    live: flag("live"),
    keep: flag("keep"),
    json: flag("json"),
  };
  if (options.turns < options.threads)
    throw new Error("--turns must be at least --threads (a generate each)");
  return options;
}

// ---------------------------------------------------------------------------------------------------------
// Children: messages are { type, ...data } over the IPC channel
// ---------------------------------------------------------------------------------------------------------

interface ChildContext {
  options: Options;
  index: number;
  dataDir: string;
  databaseUrl: string;
}

interface IngressResult {
  turns: number;
  failed: number;
  /** Submits the engine refused, by error message: the figures count only the turns it recorded. */
  refused: Record<string, number>;
  /** From the first turn started (--live: recorded) to the last one delivered, on the database's clock. */
  wallMs: number;
  /** Backlog: submits with `inFlight` at once, from the first call to the last answer. */
  backlog: Summary & { wallMs: number };
  /** Probes: one submit at a time every `probeMs` while the workers drain the backlog. */
  probes: Summary & { p95: number };
}

const send = (message: object) =>
  new Promise<void>((resolve, reject) =>
    process.send?.(message, (error: Error | null) => (error ? reject(error) : resolve())),
  );

function nextMessage(type: string): Promise<void> {
  return new Promise((resolve) => {
    const listen = (message: { type?: string }) => {
      if (message.type !== type) return;
      process.off("message", listen);
      resolve();
    };
    process.on("message", listen);
  });
}

async function runChild(role: "ingress" | "worker", ctx: ChildContext): Promise<void> {
  process.once("disconnect", () => process.exit(1)); // the parent is gone: do not linger on the database
  const provider = new InstantImageProvider({ fixtures: [await loadFixture(1024, 1024)] });
  // Each image carries a counter in a tEXt chunk so that its bytes are new; without an offset per process two
  // workers would return identical bytes and the content-addressed blob store would skip the second write.
  provider.calls = ctx.index * 1_000_000;
  const bench = await openBenchApp({
    dataDir: ctx.dataDir,
    databaseUrl: ctx.databaseUrl,
    provider,
    concurrency: ctx.options.concurrency,
    logLevel: ctx.options.logLevel,
  });
  await send({ type: "ready" });
  if (role === "worker") {
    await nextMessage("start");
    await bench.app.startWorkers(["console"]);
  } else {
    await nextMessage("go");
    const between = () => send({ type: "queued" }).then(() => nextMessage("drain"));
    await send({ type: "result", result: await runIngress(ctx, (intent) => bench.submit(intent), between) });
  }
  await nextMessage("stop");
  // The tracker (openBenchApp's console observer) saw every turn this process delivered.
  const turns = [...bench.tracker.timings.values()].filter((t) => t.finished !== undefined).length;
  await bench.app.stop();
  bench.logger.flush();
  await send({ type: "stopped", turns });
}

function intentFor(name: string, thread: string, kind: "generate" | "edit"): Intent {
  return {
    threadKey: `console:bench:${thread}`,
    kind,
    prompt: `[${name}] a lighthouse on a cliff at dusk, oil painting, warm light`,
    ...(kind === "generate" ? { params: { size: "1024x1024" }, newThread: { title: name } } : {}),
    userId: "bench",
    sourceMessageId: `m-${name}`,
    idempotencyKey: `bench-${name}`,
    // As the console adapter submits: one workspace and channel, and no "Draw it for about $X?" question.
    place: { workspaceId: "console", channelId: "console" },
    confirmed: true,
  };
}

async function runIngress(
  ctx: ChildContext,
  submit: (intent: Intent) => Promise<{ ms: number }>,
  /** Between the backlog and the probes: the parent starts the workers here unless --live. */
  between: () => Promise<void>,
): Promise<IngressResult> {
  const { turns, threads, inFlight, probeMs } = ctx.options;
  // Its own connection, so that polling never waits behind the submits in the app's pool.
  const poller = new pg.Client({
    connectionString: ctx.databaseUrl,
    application_name: "threadcanvas-bench-poll",
  });
  await poller.connect();
  const undelivered = async (threadPrefix: string) => {
    const { rows } = await poller.query<{ n: string }>(
      "select count(*) as n from turns where thread_key like $1 and delivered_at is null",
      [`console:bench:${threadPrefix}%`],
    );
    return Number(rows[0]?.n);
  };
  const waitDelivered = async (threadPrefix: string) => {
    while ((await undelivered(threadPrefix)) > 0) await sleep(50);
  };

  // The backlog: thread i % threads, round-robin, so each thread gets its generate and then its edits in order.
  // An edit is submitted once its thread's previous turn has answered (a reply follows the message it answers).
  const limit = pLimit(inFlight);
  const chains = new Map<number, Promise<unknown>>();
  const backlogMs: number[] = [];
  const refused: Record<string, number> = {};
  const refuse = (error: unknown) => {
    const message =
      error instanceof Error ? error.message.replace(/console:bench:\w+/, "<thread>") : String(error);
    refused[message] = (refused[message] ?? 0) + 1;
  };
  const backlogStart = performance.now();
  await Promise.all(
    Array.from({ length: turns }, (_, i) => {
      const thread = i % threads;
      const intent = intentFor(`b${i}`, `b${thread}`, i < threads ? "generate" : "edit");
      const chained = (chains.get(thread) ?? Promise.resolve())
        .then(() => limit(() => submit(intent)))
        .then(({ ms }) => backlogMs.push(ms), refuse);
      chains.set(thread, chained);
      return chained;
    }),
  );
  const backlogWallMs = performance.now() - backlogStart;
  await between();

  // Probes: what an adapter waits for while the workers are busy. One at a time (a probe never waits behind
  // another), each a generate in a new thread, until the backlog is delivered.
  const probeMsList: number[] = [];
  let drained = false;
  const backlogDrained = waitDelivered("b").then(() => {
    drained = true;
  });
  for (let p = 0; !drained; p++) {
    const started = performance.now();
    await submit(intentFor(`p${p}`, `p${p}`, "generate")).then(({ ms }) => probeMsList.push(ms), refuse);
    await sleep(Math.max(0, probeMs - (performance.now() - started)));
  }
  await backlogDrained;
  await waitDelivered("");

  const from = ctx.options.live ? "created_at" : "started_at";
  const { rows } = await poller.query<{ turns: string; failed: string; wall_ms: number }>(
    `select count(*) as turns, count(*) filter (where status <> 'succeeded') as failed,
            extract(epoch from max(delivered_at) - min(${from})) * 1000 as wall_ms from turns`,
  );
  await poller.end();
  const probes = summarize(probeMsList);
  return {
    turns: Number(rows[0]?.turns),
    failed: Number(rows[0]?.failed),
    refused,
    wallMs: Number(rows[0]?.wall_ms),
    backlog: { ...summarize(backlogMs), wallMs: backlogWallMs },
    probes: { ...probes, p95: nearestRank(probeMsList, 95) },
  };
}

/** harness.ts's `summarize` has no p95; the same nearest-rank rule. */
function nearestRank(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
  );
}

// ---------------------------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------------------------

interface Row extends IngressResult {
  workers: number;
  turnsPerSecond: number;
  /** Turns each worker process delivered. */
  perWorker: number[];
  /**
   * CPU during the measurement: how busy the whole machine was, and CPU-seconds of the benchmark's node
   * children, of this database's PostgreSQL backends, and of everything else (anyone else's work included).
   */
  cpu: { busyPercent: number; nodeSeconds: number; postgresSeconds: number; otherSeconds: number };
}

interface Child {
  process: ChildProcess;
  next<T>(type: string): Promise<T>;
}

const children = new Set<Child>();

function spawnChild(role: "ingress" | "worker", ctx: ChildContext): Child {
  const child = fork(fileURLToPath(import.meta.url), ["--child", role], {
    execArgv: process.execArgv,
    env: { ...process.env, BENCH_CHILD_CONTEXT: JSON.stringify(ctx) },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const inbox: Array<{ type: string }> = [];
  let wake = () => {};
  let exited: Error | undefined;
  child.on("message", (message: { type: string }) => {
    inbox.push(message);
    wake();
  });
  child.on("exit", (code, signal) => {
    exited = new Error(`${role} ${ctx.index} exited (${code ?? signal})`);
    wake();
  });
  const next = async <T>(type: string): Promise<T> => {
    for (;;) {
      const at = inbox.findIndex((message) => message.type === type);
      if (at !== -1) return inbox.splice(at, 1)[0] as T;
      if (exited) throw exited;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  };
  const handle = { process: child, next };
  children.add(handle);
  return handle;
}

async function measure(options: Options, workers: number, dataDir: string, url: string): Promise<Row> {
  const ctx = (index: number): ChildContext => ({ options, index, dataDir, databaseUrl: url });
  // The ingress starts first: it applies the migrations and creates the queues before the workers look for them.
  const ingress = spawnChild("ingress", ctx(0));
  await ingress.next("ready");
  const pool = Array.from({ length: workers }, (_, i) => spawnChild("worker", ctx(i + 1)));
  await Promise.all(pool.map((worker) => worker.next("ready")));
  note(`${workers} worker process(es) ready; submitting`);

  const all = [ingress, ...pool];
  const database = new URL(url).pathname.slice(1);
  const snapshot = async () => ({
    machine: machineBusySeconds(),
    ...(await cpuOf(all, options.databaseUrl, database)),
  });
  // Without --live the backlog is queued before the workers start, and only the drain is measured.
  if (!options.live) {
    ingress.process.send({ type: "go" });
    await ingress.next("queued");
  }
  const before = await snapshot();
  for (const worker of pool) worker.process.send({ type: "start" });
  if (options.live) {
    ingress.process.send({ type: "go" });
    await ingress.next("queued");
  }
  ingress.process.send({ type: "drain" });
  const { result } = await ingress.next<{ result: IngressResult }>("result");
  const after = await snapshot();
  const delta = (a: Map<number, number>, b: Map<number, number>) =>
    [...b].reduce((sum, [pid, seconds]) => sum + seconds - (a.get(pid) ?? 0), 0);
  const machine = after.machine - before.machine;
  const node = delta(before.node, after.node);
  const postgres = delta(before.postgres, after.postgres);

  for (const child of all) child.process.send({ type: "stop" });
  const stopped = await Promise.all(all.map((child) => child.next<{ turns: number }>("stopped")));
  for (const child of all) children.delete(child);
  const wallSeconds = result.wallMs / 1000;
  return {
    workers,
    ...result,
    turnsPerSecond: result.turns / wallSeconds,
    perWorker: stopped.slice(1).map((s) => s.turns),
    cpu: {
      busyPercent: (100 * machine) / (wallSeconds * os.availableParallelism()),
      nodeSeconds: node,
      postgresSeconds: postgres,
      otherSeconds: machine - node - postgres,
    },
  };
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf("--child");
  if (childAt !== -1) {
    const ctx = JSON.parse(process.env.BENCH_CHILD_CONTEXT ?? "null") as ChildContext;
    await runChild(process.argv[childAt + 1] as "ingress" | "worker", ctx);
    process.exit(0);
  }
  const options = parseOptions(process.argv.slice(2));
  const runId = randomBytes(4).toString("hex");
  const root = await mkdtemp(path.join(os.tmpdir(), "tc-bench-workers-"));
  const scratch = new Set<string>();
  const drop = (name: string) =>
    dropScratchDatabase(options.databaseUrl, name).then(
      () => scratch.delete(name),
      (e: unknown) => note(`could not drop ${name}: ${e}`),
    );
  const killChildren = () => {
    for (const child of children) child.process.kill("SIGKILL");
    children.clear();
  };
  // Ctrl-C: the children go at once, which makes the row in progress throw; main() then cleans up as usual.
  let interrupted = false;
  process.once("SIGINT", () => {
    interrupted = true;
    note("interrupted: cleaning up");
    killChildren();
  });

  const header = {
    date: new Date().toISOString(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "?",
    node: process.version,
    /** 1, 5 and 15 minute load averages at the start: other work on the machine skews the figures. */
    loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100),
    postgres: await serverVersion(options.databaseUrl),
    options: { ...options, databaseUrl: redactDatabaseUrl(options.databaseUrl) },
  };
  await loadFixture(1024, 1024); // made (and cached) once here, not by every child at once
  const rows: Row[] = [];
  const errors: string[] = [];
  try {
    for (const [i, workers] of options.workers.entries()) {
      if (interrupted) break;
      const name = `tc_bench_${runId}_${i}_w${workers}`;
      const url = await createScratchDatabase(options.databaseUrl, name);
      scratch.add(name);
      note(`${workers} worker(s): database ${name}`);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true; // the children's exit makes measure() throw
        killChildren();
      }, options.timeoutSeconds * 1000);
      try {
        rows.push(await measure(options, workers, path.join(root, `${i}_w${workers}`), url));
      } catch (error) {
        const why = timedOut ? `timed out after ${options.timeoutSeconds} s` : String(error);
        errors.push(`${workers} worker(s): ${why}`);
        killChildren();
      } finally {
        clearTimeout(timer);
      }
      // Dropped at once: the next row gets the server without this row's database and connections.
      if (!options.keep) await drop(name);
    }
  } finally {
    killChildren();
    if (options.keep) note(`kept ${root} and databases ${[...scratch].join(", ")}`);
    else {
      await rm(root, { recursive: true, force: true });
      for (const name of [...scratch]) await drop(name);
    }
  }
  if (interrupted) process.exit(130);
  if (options.json) process.stdout.write(`${JSON.stringify({ ...header, rows, errors }, null, 2)}\n`);
  else printTable(header, rows, errors);
}

const COLUMNS: Array<[string, (r: Row) => string]> = [
  ["workers", (r) => String(r.workers)],
  ["turns", (r) => String(r.turns)],
  ["wall s", (r) => (r.wallMs / 1000).toFixed(2)],
  ["turns/s", (r) => r.turnsPerSecond.toFixed(1)],
  ["ack p50", (r) => fmt(r.probes.p50)],
  ["p95", (r) => fmt(r.probes.p95)],
  ["p99", (r) => fmt(r.probes.p99)],
  ["(probes)", (r) => String(r.probes.n)],
  ["backlog submitted s", (r) => (r.backlog.wallMs / 1000).toFixed(2)],
  ["ack p50", (r) => fmt(r.backlog.p50)],
  ["p99", (r) => fmt(r.backlog.p99)],
  ["CPU busy %", (r) => r.cpu.busyPercent.toFixed(0)],
  ["node s", (r) => r.cpu.nodeSeconds.toFixed(1)],
  ["postgres s", (r) => r.cpu.postgresSeconds.toFixed(1)],
  ["other s", (r) => r.cpu.otherSeconds.toFixed(1)],
  ["turns per worker", (r) => r.perWorker.join("/")],
];

function printTable(
  header: Record<"date" | "cpuModel" | "node" | "postgres", string> & {
    cpus: number;
    loadAverage: number[];
    options: Options;
  },
  rows: Row[],
  errors: string[],
): void {
  const o = header.options;
  const cells = [COLUMNS.map(([title]) => title), ...rows.map((row) => COLUMNS.map(([, cell]) => cell(row)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i]?.length ?? 0)));
  const lines = [
    `threadcanvas workers benchmark — PostgreSQL ${header.postgres}, a scratch database per row`,
    `machine: ${header.cpus} cores (${header.cpuModel}), Node ${header.node}, ${header.date}, load average ${header.loadAverage.join(" ")}`,
    `backlog: ${o.turns} turns in ${o.threads} threads (a generate, then edits), 1024x1024 PNG, ${o.inFlight} submits in flight, ` +
      (o.live
        ? "while the workers run; wall s from the first recorded"
        : "before the workers start; wall s from the first started"),
    `ack: engine.submit in the ingress, one probe every ${o.probeMs} ms while the workers drain the backlog (ms)`,
    "",
    ...cells.map((line) => line.map((cell, i) => cell.padStart(widths[i] ?? 0)).join("  ")),
    ...rows
      .filter((r) => r.failed > 0)
      .map((r) => `${r.workers} worker(s): ${r.failed} turns did not succeed`),
    ...rows.flatMap((r) =>
      Object.entries(r.refused).map(([why, n]) => `${r.workers} worker(s): ${n} submits refused: ${why}`),
    ),
    ...errors.map((error) => `NOT MEASURED: ${error}`),
    "",
    "CPU-seconds during the row: node = the benchmark's processes, postgres = this database's backends,",
    "other = the rest of the machine (the server's background processes, and anyone else's work).",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** CPU-seconds the benchmark's node children and this database's PostgreSQL backends have used, by pid. */
async function cpuOf(all: Child[], adminUrl: string, database: string) {
  const client = new pg.Client({ connectionString: adminUrl, application_name: "threadcanvas-bench-cpu" });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      "select pid from pg_stat_activity where datname = $1",
      [database],
    );
    const byPid = (pids: number[]) => new Map(pids.map((pid) => [pid, processCpuSeconds(pid)]));
    return {
      node: byPid(all.map((child) => child.process.pid ?? 0)),
      postgres: byPid(rows.map((row) => row.pid)),
    };
  } finally {
    await client.end();
  }
}

/** CPU-seconds every process on the machine has spent busy since boot (as engine-bench.ts, whose import would run it). */
function machineBusySeconds(): number {
  const cpu =
    readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ is 100 on Linux
}

/** utime + stime of one process (`/proc/<pid>/stat` fields 14 and 15); 0 once it is gone. */
function processCpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
