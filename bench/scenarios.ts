/**
 * The benchmark's scenarios, one per group of figures; each runs in a child process of its own with a fresh
 * DATA_DIR and database (see engine-bench.ts). They only measure and return figures; nothing here asserts.
 */
import type { ImageParams, Turn } from "../src/domain.ts";
import type { Intent } from "../src/ports.ts";
import { type Fixture, loadFixture } from "./fixtures.ts";
import { type BenchApp, note, openBenchApp, type Summary, summarize, type TurnTiming } from "./harness.ts";
import { InstantImageProvider, TimedImageProvider } from "./instant-provider.ts";
import { fmt, mb } from "./report.ts";

export const PARTS = ["submit", "overhead", "throughput", "memory", "chain"] as const;
export type Part = (typeof PARTS)[number];

export interface BenchOptions {
  json: boolean;
  parts: Part[];
  databaseUrl: string | undefined;
  /** Worker concurrency for figures 1–3 and 5; undefined = the app's default (WORKER_CONCURRENCY). */
  concurrency: number | undefined;
  idleSubmits: number;
  burst: number;
  throughputTurns: number;
  overheadTurns: number;
  memoryTurns: number;
  holdMs: number;
  sampleMs: number;
  chainEdits: number;
  chainWindow: number;
  chainSize: string;
  logLevel: string;
  keep: boolean;
  /** A group still running after this long is stopped and reported as timed out. */
  groupTimeoutSeconds: number;
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------------------

/** The provider's 2K images: square and 16:9. Generates alternate between them. */
export const MAIN_SIZES = ["2048x2048", "2048x1152"] as const;

export async function loadSizes(sizes: readonly string[]): Promise<Fixture[]> {
  const fixtures: Fixture[] = [];
  for (const size of sizes) {
    const [width, height] = size.split("x").map(Number) as [number, number];
    fixtures.push(await loadFixture(width, height));
  }
  return fixtures;
}

export interface GroupContext {
  options: BenchOptions;
  runId: string;
  dataDir: string;
  databaseUrl: string | undefined;
}

function threadKey(ctx: GroupContext, name: string): string {
  return `console:bench-${ctx.runId}:${name}`;
}

function generateIntent(ctx: GroupContext, name: string, size: string): Intent {
  return {
    threadKey: threadKey(ctx, name),
    kind: "generate",
    prompt: `[${name}] a lighthouse on a cliff at dusk, oil painting, warm light`,
    params: { size } satisfies Partial<ImageParams>,
    userId: "U-bench",
    sourceMessageId: `m-${name}`,
    idempotencyKey: `bench-${ctx.runId}-${name}`,
    newThread: { title: `bench ${name}` },
  };
}

function editIntent(ctx: GroupContext, thread: string, name: string): Intent {
  return {
    threadKey: threadKey(ctx, thread),
    kind: "edit",
    prompt: `[${name}] make the sky a little more purple`,
    userId: "U-bench",
    sourceMessageId: `m-${name}`,
    idempotencyKey: `bench-${ctx.runId}-${name}`,
  };
}

/** Per-turn figures from the tracker's timestamps and the provider's own time. */
export interface TurnFigures {
  /** engine.submit, call to answer. */
  submit: Summary;
  /** submit called → the queue called runTurn (the worker often starts before submit has answered). */
  toStart: Summary;
  /** `running` event → `finished` (deliver called). */
  turn: Summary;
  /** Inside provider calls. */
  provider: Summary;
  /** turn − provider: the engine's own time. */
  overhead: Summary;
  /** The whole queue handler: runTurn entry to exit (adds startTurn and markDelivered). */
  handler: Summary;
  failed: number;
}

function turnFigures(timings: readonly TurnTiming[], timed: TimedImageProvider): TurnFigures {
  const list = (pick: (timing: TurnTiming) => number | undefined) =>
    timings.map(pick).filter((value): value is number => value !== undefined && Number.isFinite(value));
  const providerOf = (t: TurnTiming) => (t.prompt === undefined ? undefined : timed.providerMs(t.prompt));
  return {
    submit: summarize(list((t) => diff(t.submitStart, t.submitEnd))),
    toStart: summarize(list((t) => diff(t.submitStart, t.handlerStart))),
    turn: summarize(list((t) => diff(t.running, t.finished))),
    provider: summarize(list(providerOf)),
    overhead: summarize(
      list((t) => {
        const turn = diff(t.running, t.finished);
        const provider = providerOf(t);
        return turn === undefined || provider === undefined ? undefined : turn - provider;
      }),
    ),
    handler: summarize(list((t) => diff(t.handlerStart, t.handlerEnd))),
    failed: timings.filter((t) => t.status !== undefined && t.status !== "succeeded").length,
  };
}

function diff(from: number | undefined, to: number | undefined): number | undefined {
  return from === undefined || to === undefined ? undefined : to - from;
}

async function withApp<T>(
  ctx: GroupContext,
  provider: InstantImageProvider,
  concurrency: number | undefined,
  run: (bench: BenchApp, timed: TimedImageProvider) => Promise<T>,
): Promise<T> {
  const timed = new TimedImageProvider(provider);
  const opening = performance.now();
  const bench = await openBenchApp({
    dataDir: ctx.dataDir,
    databaseUrl: ctx.databaseUrl,
    provider: timed,
    concurrency,
    logLevel: ctx.options.logLevel,
  });
  note(`app ready in ${Math.round(performance.now() - opening)} ms (${bench.app.database.kind})`);
  try {
    return await run(bench, timed);
  } finally {
    await bench.app.stop();
    bench.logger.flush();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Group "queue": figures 1 (submit), 3 (throughput) and 2 (engine time per turn)
// ---------------------------------------------------------------------------------------------------------

export interface QueueResult {
  concurrency: number;
  idleSubmit?: Summary;
  burstSubmit?: Summary & { wallMs: number; threads: number };
  throughput?: { turns: number; wallMs: number; turnsPerSecond: number; figures: TurnFigures };
  overhead?: { pairs: number; generate: TurnFigures; edit: TurnFigures };
}

export async function runQueueGroup(ctx: GroupContext): Promise<QueueResult> {
  const { options } = ctx;
  const provider = new InstantImageProvider({ fixtures: await loadSizes(MAIN_SIZES) });
  return withApp(ctx, provider, options.concurrency, async (bench, timed) => {
    const result: QueueResult = { concurrency: bench.config.workerConcurrency };
    const queued: Turn[] = [];
    let n = 0;
    const nextGenerate = () => {
      const i = n++;
      return generateIntent(ctx, `q${i}`, MAIN_SIZES[i % MAIN_SIZES.length] as string);
    };

    if (options.parts.includes("submit")) {
      // Workers are not started yet: only submit runs.
      // One submit first, not counted: the first call pays for JIT and cold caches.
      queued.push((await bench.submit(nextGenerate())).turn);
      const idle: number[] = [];
      for (let i = 0; i < options.idleSubmits; i++) {
        const { turn, ms } = await bench.submit(nextGenerate());
        idle.push(ms);
        queued.push(turn);
      }
      result.idleSubmit = summarize(idle);
      note(`idle submits: p50 ${fmt(result.idleSubmit.p50)} ms`);

      const intents = Array.from({ length: options.burst }, nextGenerate);
      const wallStart = performance.now();
      const answers = await Promise.all(intents.map((intent) => bench.submit(intent)));
      const wallMs = performance.now() - wallStart;
      queued.push(...answers.map((answer) => answer.turn));
      result.burstSubmit = {
        ...summarize(answers.map((answer) => answer.ms)),
        wallMs,
        threads: options.burst,
      };
      note(
        `${options.burst} concurrent submits: p50 ${fmt(result.burstSubmit.p50)} ms, max ${fmt(result.burstSubmit.max)} ms`,
      );
    }

    if (options.parts.includes("throughput")) {
      // Top up to the target, 20 at a time, then start the workers and drain.
      while (queued.length < options.throughputTurns) {
        const batch = Array.from(
          { length: Math.min(20, options.throughputTurns - queued.length) },
          nextGenerate,
        );
        queued.push(
          ...(await Promise.all(batch.map((intent) => bench.submit(intent)))).map((answer) => answer.turn),
        );
      }
      note(`draining ${queued.length} queued turns…`);
      const wallStart = performance.now();
      await bench.app.startWorkers();
      await bench.tracker.waitAll(queued.map((turn) => turn.id));
      const wallMs = performance.now() - wallStart;
      const timings = queued.map((turn) => bench.tracker.timing(turn.id));
      const figures = turnFigures(timings, timed);
      result.throughput = {
        turns: queued.length,
        wallMs,
        turnsPerSecond: (queued.length / wallMs) * 1000,
        figures,
      };
      note(`throughput: ${result.throughput.turnsPerSecond.toFixed(1)} turns/s (${figures.failed} failed)`);
    } else if (options.parts.includes("overhead")) {
      // The per-turn figure wants an idle queue: run what the submit figure queued first.
      await bench.app.startWorkers();
      await bench.tracker.waitAll(queued.map((turn) => turn.id));
    }

    if (options.parts.includes("overhead")) {
      // One turn at a time, nothing else running: a generate in a new thread, then an edit of its image.
      const generates: TurnTiming[] = [];
      const edits: TurnTiming[] = [];
      for (let i = 0; i < options.overheadTurns; i++) {
        const name = `o${i}`;
        const generate = await bench.submit(
          generateIntent(ctx, name, MAIN_SIZES[i % MAIN_SIZES.length] as string),
        );
        await bench.tracker.waitFinished(generate.turn.id);
        generates.push(bench.tracker.timing(generate.turn.id));
        const edit = await bench.submit(editIntent(ctx, name, `${name}-e`));
        await bench.tracker.waitFinished(edit.turn.id);
        edits.push(bench.tracker.timing(edit.turn.id));
      }
      result.overhead = {
        pairs: options.overheadTurns,
        generate: turnFigures(generates, timed),
        edit: turnFigures(edits, timed),
      };
      note(
        `engine overhead p50: generate ${fmt(result.overhead.generate.overhead.p50)} ms, edit ${fmt(result.overhead.edit.overhead.p50)} ms`,
      );
    }
    return result;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Group "memory": figure 4
// ---------------------------------------------------------------------------------------------------------

export interface MemoryResult {
  turns: number;
  holdMs: number;
  sampleMs: number;
  samples: number;
  peakInFlight: number;
  wallMs: number;
  /** Bytes. */
  baseline: NodeJS.MemoryUsage;
  peak: { rss: number; heapUsed: number; external: number; arrayBuffers: number };
  /** The child process's own high-water mark, start-up (PGlite initdb) included. */
  processMaxRss: number;
  figures: TurnFigures;
}

export async function runMemoryGroup(ctx: GroupContext): Promise<MemoryResult> {
  const { options } = ctx;
  const provider = new InstantImageProvider({ fixtures: await loadSizes(MAIN_SIZES) });
  return withApp(ctx, provider, options.memoryTurns, async (bench, timed) => {
    await bench.app.startWorkers();
    // Each thread gets a first image at once; then every thread is edited with the provider holding each call.
    const first = await Promise.all(
      Array.from({ length: options.memoryTurns }, (_, i) =>
        bench.submit(generateIntent(ctx, `m${i}`, MAIN_SIZES[i % MAIN_SIZES.length] as string)),
      ),
    );
    await bench.tracker.waitAll(first.map((answer) => answer.turn.id));
    await new Promise((resolve) => setTimeout(resolve, 1000));

    provider.delayMs = options.holdMs;
    provider.resetPeak();
    const baseline = process.memoryUsage();
    const peak = {
      rss: baseline.rss,
      heapUsed: baseline.heapUsed,
      external: baseline.external,
      arrayBuffers: baseline.arrayBuffers,
    };
    let samples = 0;
    const sampler = setInterval(() => {
      const usage = process.memoryUsage();
      samples++;
      peak.rss = Math.max(peak.rss, usage.rss);
      peak.heapUsed = Math.max(peak.heapUsed, usage.heapUsed);
      peak.external = Math.max(peak.external, usage.external);
      peak.arrayBuffers = Math.max(peak.arrayBuffers, usage.arrayBuffers);
    }, options.sampleMs);
    const wallStart = performance.now();
    const edits = await Promise.all(
      Array.from({ length: options.memoryTurns }, (_, i) =>
        bench.submit(editIntent(ctx, `m${i}`, `m${i}-e`)),
      ),
    );
    await bench.tracker.waitAll(edits.map((answer) => answer.turn.id));
    const wallMs = performance.now() - wallStart;
    clearInterval(sampler);
    const result: MemoryResult = {
      turns: options.memoryTurns,
      holdMs: options.holdMs,
      sampleMs: options.sampleMs,
      samples,
      peakInFlight: provider.peakInFlight,
      wallMs,
      baseline,
      peak,
      processMaxRss: process.resourceUsage().maxRSS * 1024,
      figures: turnFigures(
        edits.map((answer) => bench.tracker.timing(answer.turn.id)),
        timed,
      ),
    };
    note(
      `memory: peak RSS ${mb(peak.rss)} MB (baseline ${mb(baseline.rss)} MB), ${provider.peakInFlight} in flight at most`,
    );
    return result;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Group "chain": figure 5
// ---------------------------------------------------------------------------------------------------------

export interface ChainResult {
  edits: number;
  window: number;
  imageSize: string;
  imageBytes: number;
  first: TurnFigures;
  last: TurnFigures;
  /** Control: the first edits of a new thread in the same database, after the long thread. */
  fresh: TurnFigures;
  /** p50s per block of 100 edits (submit, turn, engine overhead), to show the trend along the thread. */
  blocks: { from: number; to: number; submitP50: number; turnP50: number; overheadP50: number }[];
  /** All edits, one after another: submit, wait for the result, submit the next. */
  wallMs: number;
  turnsPerSecond: number;
  failed: number;
  /** engine.history() of the finished thread. */
  historyMs: number;
  historyTurns: number;
}

/**
 * Every edit is submitted after the previous one finished, as a user replying in a thread would, so each edit is
 * timed on its own.
 */
export async function runChainGroup(ctx: GroupContext): Promise<ChainResult> {
  const { options } = ctx;
  const fixtures = await loadSizes([options.chainSize]);
  const provider = new InstantImageProvider({ fixtures });
  return withApp(ctx, provider, options.concurrency, async (bench, timed) => {
    await bench.app.startWorkers();
    // Warm-up in a thread of its own (JIT, caches), so that edit #1 of the long thread is not a cold start.
    const warm = await bench.submit(generateIntent(ctx, "chain-warmup", options.chainSize));
    await bench.tracker.waitFinished(warm.turn.id);
    for (let k = 1; k <= 10; k++) {
      const { turn } = await bench.submit(editIntent(ctx, "chain-warmup", `chain-warmup-e${k}`));
      await bench.tracker.waitFinished(turn.id);
    }

    const thread = "chain";
    const base = await bench.submit(generateIntent(ctx, thread, options.chainSize));
    await bench.tracker.waitFinished(base.turn.id);

    const timings: TurnTiming[] = [];
    const wallStart = performance.now();
    for (let k = 1; k <= options.chainEdits; k++) {
      const { turn } = await bench.submit(editIntent(ctx, thread, `chain-e${k}`));
      await bench.tracker.waitFinished(turn.id);
      timings.push(bench.tracker.timing(turn.id));
      if (k % 100 === 0) note(`long thread: edit ${k} done`);
    }
    const wallMs = performance.now() - wallStart;

    // Control: is a slower end of the thread the thread's length, or just a fuller database?
    const window = options.chainWindow;
    const control = await bench.submit(generateIntent(ctx, "chain-control", options.chainSize));
    await bench.tracker.waitFinished(control.turn.id);
    const fresh: TurnTiming[] = [];
    for (let k = 1; k <= window; k++) {
      const { turn } = await bench.submit(editIntent(ctx, "chain-control", `chain-control-e${k}`));
      await bench.tracker.waitFinished(turn.id);
      fresh.push(bench.tracker.timing(turn.id));
    }

    const historyStart = performance.now();
    const history = await bench.app.engine.history(threadKey(ctx, thread));
    const historyMs = performance.now() - historyStart;

    const blocks: ChainResult["blocks"] = [];
    for (let from = 0; from < timings.length; from += 100) {
      const figures = turnFigures(timings.slice(from, from + 100), timed);
      blocks.push({
        from: from + 1,
        to: Math.min(from + 100, timings.length),
        submitP50: figures.submit.p50,
        turnP50: figures.turn.p50,
        overheadP50: figures.overhead.p50,
      });
    }
    return {
      edits: options.chainEdits,
      window,
      imageSize: options.chainSize,
      imageBytes: (fixtures[0] as Fixture).bytes.length,
      first: turnFigures(timings.slice(0, window), timed),
      last: turnFigures(timings.slice(-window), timed),
      fresh: turnFigures(fresh, timed),
      blocks,
      wallMs,
      turnsPerSecond: (timings.length / wallMs) * 1000,
      failed: [...timings, ...fresh].filter((t) => t.status !== "succeeded").length,
      historyMs,
      historyTurns: history?.turns.length ?? 0,
    };
  });
}
