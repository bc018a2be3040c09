/**
 * `npm run bench` — measures the engine with a provider that answers at once with pre-made 2K PNGs.
 * Embedded PGlite by default; PostgreSQL when BENCH_DATABASE_URL (or --database-url) names a server, on which
 * scratch databases `tc_bench_<random>_<group>` are created and dropped. See bench/README.md for the figures.
 *
 * The parent process prepares the images, then runs each group of figures in a child process of its own (a
 * fresh DATA_DIR and database each), so memory figures are not polluted by the other groups.
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { redactDatabaseUrl } from "../src/store/database.ts";
import { createScratchDatabase, dropScratchDatabase, note, serverVersion, startedAt } from "./harness.ts";
import { type BenchReport, printReport } from "./report.ts";
import {
  type BenchOptions,
  type GroupContext,
  loadSizes,
  MAIN_SIZES,
  PARTS,
  type Part,
  runChainGroup,
  runMemoryGroup,
  runQueueGroup,
} from "./scenarios.ts";

// ---------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------

const HELP = `usage: npm run bench -- [options]            (every option also reads BENCH_<NAME>, e.g. BENCH_BURST=200)
  --json                  print the figures as JSON instead of a table
  --only <parts>          comma list of ${PARTS.join(",")} (default: all)
  --database-url <url>    PostgreSQL server to use instead of PGlite (env BENCH_DATABASE_URL); a scratch
                          database is created on it and dropped afterwards
  --concurrency <n>       worker concurrency for figures 1-3 and 5 (default: the app's, WORKER_CONCURRENCY=4)
  --idle-submits <n>      one-at-a-time submits before the burst (default 20)
  --burst <n>             concurrent submits, one thread each (default 100)
  --throughput-turns <n>  queued turns drained for the throughput figure (default 200)
  --overhead-turns <n>    sequential generate+edit pairs for the per-turn figure (default 25)
  --memory-turns <n>      turns in flight for the memory figure (default 50)
  --hold-ms <ms>          how long the provider holds each call in the memory figure (default 1000)
  --sample-ms <ms>        RSS sampling interval (default 50)
  --chain-edits <n>       edits in the long thread (default 1000)
  --chain-window <n>      edits compared at each end of the long thread (default 10)
  --chain-size <WxH>      image size used in the long thread (default 1024x1024; 2048x2048 works, ~2x slower)
  --log-level <level>     the app's pino level; the log goes to a file in the temp DATA_DIR (default info)
  --keep                  keep the temp DATA_DIR and the scratch databases
  --group-timeout <s>     stop a group of figures that runs longer than this (default 600)`;

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" },
      only: { type: "string" },
      "database-url": { type: "string" },
      concurrency: { type: "string" },
      "idle-submits": { type: "string" },
      burst: { type: "string" },
      "throughput-turns": { type: "string" },
      "overhead-turns": { type: "string" },
      "memory-turns": { type: "string" },
      "hold-ms": { type: "string" },
      "sample-ms": { type: "string" },
      "chain-edits": { type: "string" },
      "chain-window": { type: "string" },
      "chain-size": { type: "string" },
      "log-level": { type: "string" },
      keep: { type: "boolean" },
      "group-timeout": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  const env = (name: string) => process.env[`BENCH_${name.toUpperCase().replaceAll("-", "_")}`];
  const text = (name: keyof typeof values) => {
    const given = values[name];
    return typeof given === "string" ? given : env(name);
  };
  const flag = (name: "json" | "keep") => values[name] === true || /^(1|true|yes)$/i.test(env(name) ?? "");
  const int = (name: keyof typeof values, fallback: number, min = 1) => {
    const raw = text(name);
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min)
      throw new Error(`--${name} must be a whole number >= ${min}`);
    return value;
  };
  const only = text("only");
  const parts = only ? (only.split(",").map((part) => part.trim()) as Part[]) : [...PARTS];
  for (const part of parts) if (!PARTS.includes(part)) throw new Error(`--only: unknown part ${part}`);
  const chainSize = text("chain-size") ?? "1024x1024";
  if (!/^\d+x\d+$/.test(chainSize)) throw new Error("--chain-size must be WxH, e.g. 1024x1024");
  const concurrency = text("concurrency");
  const options: BenchOptions = {
    json: flag("json"),
    parts,
    databaseUrl: text("database-url") || undefined,
    concurrency: concurrency ? int("concurrency", 4) : undefined,
    idleSubmits: int("idle-submits", 20, 0),
    burst: int("burst", 100),
    throughputTurns: int("throughput-turns", 200),
    overheadTurns: int("overhead-turns", 25),
    memoryTurns: int("memory-turns", 50),
    holdMs: int("hold-ms", 1000, 0),
    sampleMs: int("sample-ms", 50),
    chainEdits: int("chain-edits", 1000),
    chainWindow: int("chain-window", 10),
    chainSize,
    logLevel: text("log-level") ?? "info",
    keep: flag("keep"),
    groupTimeoutSeconds: int("group-timeout", 600),
  };
  if (options.chainWindow * 2 > options.chainEdits)
    throw new Error("--chain-window must be at most half of --chain-edits");
  return options;
}

// ---------------------------------------------------------------------------------------------------------
// Orchestration
// ---------------------------------------------------------------------------------------------------------

const GROUPS = {
  queue: { parts: ["submit", "throughput", "overhead"], run: runQueueGroup },
  memory: { parts: ["memory"], run: runMemoryGroup },
  chain: { parts: ["chain"], run: runChainGroup },
} as const satisfies Record<string, { parts: readonly Part[]; run: (ctx: GroupContext) => Promise<unknown> }>;
type GroupName = keyof typeof GROUPS;

async function runChild(group: GroupName): Promise<void> {
  const ctx = JSON.parse(process.env.BENCH_CHILD_CONTEXT ?? "null") as GroupContext;
  const result = await GROUPS[group].run(ctx);
  const cpu = process.cpuUsage();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  await new Promise<void>((resolve, reject) =>
    process.send?.({ result, cpuSeconds }, (error: Error | null) => (error ? reject(error) : resolve())),
  );
}

function spawnGroup(group: GroupName, ctx: GroupContext): Promise<{ result: unknown; cpuSeconds: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ["--child", group], {
      execArgv: process.execArgv,
      env: { ...process.env, BENCH_CHILD_CONTEXT: JSON.stringify(ctx) },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    let answer: { result: unknown; cpuSeconds: number } | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      note(`group ${group} still running after ${ctx.options.groupTimeoutSeconds} s: stopping it`);
      child.kill("SIGKILL");
    }, ctx.options.groupTimeoutSeconds * 1000);
    child.on("message", (message: { result: unknown; cpuSeconds: number }) => {
      answer = message;
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (answer !== undefined) resolve(answer);
      else if (timedOut) reject(new Error(`timed out after ${ctx.options.groupTimeoutSeconds} s`));
      else reject(new Error(`ended without a result (exit ${code ?? signal})`));
    });
  });
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf("--child");
  if (childAt !== -1) {
    await runChild(process.argv[childAt + 1] as GroupName);
    process.exit(0);
  }

  const options = parseOptions(process.argv.slice(2));
  const runId = randomBytes(4).toString("hex");
  const root = await mkdtemp(path.join(os.tmpdir(), "tc-bench-"));
  const scratch: string[] = [];
  let interrupted = false;
  const cleanup = async () => {
    if (options.keep) {
      note(`kept ${root}${scratch.length ? ` and databases ${scratch.join(", ")}` : ""}`);
      return;
    }
    await rm(root, { recursive: true, force: true });
    for (const name of scratch) {
      await dropScratchDatabase(options.databaseUrl as string, name).catch((error: unknown) =>
        note(`could not drop ${name}: ${String(error)}`),
      );
    }
  };
  process.once("SIGINT", () => {
    interrupted = true;
    note("interrupted: cleaning up");
    void cleanup().finally(() => process.exit(130));
  });

  try {
    const machineBusyAtStart = machineBusySeconds();
    note(`run ${runId}: ${options.databaseUrl ? "PostgreSQL" : "PGlite"}, temp ${root}`);
    const images = await loadSizes([...new Set([...MAIN_SIZES, options.chainSize])]); // made once and cached
    const report: BenchReport = {
      machine: {
        date: new Date().toISOString(),
        cpus: os.availableParallelism(),
        cpuModel: os.cpus()[0]?.model ?? "?",
        memoryBytes: os.totalmem(),
        node: process.version,
        platform: `${process.platform} ${process.arch}`,
        loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100),
      },
      backend: options.databaseUrl
        ? { kind: "pg", version: await serverVersion(options.databaseUrl) }
        : { kind: "pglite", version: pgliteVersion() },
      // A password in the URL stays out of the printed report.
      options: { ...options, databaseUrl: options.databaseUrl && redactDatabaseUrl(options.databaseUrl) },
      images: images.map((image) => ({ size: `${image.width}x${image.height}`, bytes: image.bytes.length })),
      results: {},
      errors: [],
    };
    let benchCpuSeconds = 0;
    for (const [name, group] of Object.entries(GROUPS) as [GroupName, (typeof GROUPS)[GroupName]][]) {
      if (!group.parts.some((part) => options.parts.includes(part))) continue;
      let databaseUrl: string | undefined;
      if (options.databaseUrl) {
        const database = `tc_bench_${runId}_${name}`;
        databaseUrl = await createScratchDatabase(options.databaseUrl, database);
        scratch.push(database);
      }
      note(`group ${name}…`);
      const dataDir = path.join(root, name);
      try {
        const { result, cpuSeconds } = await spawnGroup(name, { options, runId, dataDir, databaseUrl });
        (report.results as Record<string, unknown>)[name] = result;
        benchCpuSeconds += cpuSeconds;
      } catch (error) {
        report.errors.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (interrupted) return;
    const own = process.cpuUsage();
    benchCpuSeconds += (own.user + own.system) / 1e6;
    const machineCpuSeconds = machineBusySeconds() - machineBusyAtStart;
    report.cpu = {
      benchSeconds: benchCpuSeconds,
      otherSeconds: Number.isNaN(machineCpuSeconds) ? null : Math.max(0, machineCpuSeconds - benchCpuSeconds),
    };
    report.totalSeconds = (performance.now() - startedAt) / 1000;
    if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else printReport(report);
  } finally {
    if (!interrupted) await cleanup();
  }
}

/** CPU-seconds every process on the machine has spent busy since boot (Linux `/proc/stat`); NaN elsewhere. */
function machineBusySeconds(): number {
  try {
    const cpu =
      readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
    return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

function pgliteVersion(): string {
  try {
    const file = new URL("../node_modules/@electric-sql/pglite/package.json", import.meta.url);
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
