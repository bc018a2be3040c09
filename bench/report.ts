import type { Summary } from "./harness.ts";
import type { BenchOptions, ChainResult, MemoryResult, QueueResult, TurnFigures } from "./scenarios.ts";

export interface BenchReport {
  machine: {
    date: string;
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    node: string;
    platform: string;
    /** 1, 5 and 15 minute load averages when the run started: other work on the machine skews the figures. */
    loadAverage: number[];
  };
  backend: { kind: "pg" | "pglite"; version: string };
  options: BenchOptions;
  images: { size: string; bytes: number }[];
  results: { queue?: QueueResult; memory?: MemoryResult; chain?: ChainResult };
  /**
   * CPU-seconds used during the run by the benchmark's own Node processes, and by everything else on the
   * machine (the PostgreSQL server included, and anyone else's work, which skews the figures).
   */
  cpu?: { benchSeconds: number; otherSeconds: number | null };
  /** Groups of figures that did not finish (timed out, crashed). */
  errors: string[];
  totalSeconds?: number;
}

export function fmt(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

export function mb(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(0);
}

const count = (n: number) => n.toLocaleString("en-US");

/** Left column left-aligned, the rest right-aligned, two spaces apart. */
function table(rows: readonly (readonly string[])[], indent = "   "): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[0] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => indent + line)
    .join("\n");
}

const pcts = (s: Summary) => [fmt(s.p50), fmt(s.p99), fmt(s.max)];

function turnRows(label: string, f: TurnFigures): string[][] {
  return [
    [`${label}  turn (running → finished)`, ...pcts(f.turn)],
    ["   in the provider", ...pcts(f.provider)],
    ["   engine overhead (turn − provider)", ...pcts(f.overhead)],
    ["   to start (submit called → runTurn called)", ...pcts(f.toStart)],
    ["   whole job (runTurn, + startTurn, markDelivered)", ...pcts(f.handler)],
  ];
}

export function printReport(report: BenchReport): void {
  const { machine, backend, options, results } = report;
  const out: string[] = [];
  const backendName =
    backend.kind === "pg"
      ? `PostgreSQL ${backend.version} (scratch database)`
      : `PGlite ${backend.version} (embedded, file DATA_DIR)`;
  out.push(`threadcanvas engine benchmark — ${backendName}`);
  out.push(
    `machine: ${machine.cpus} cores (${machine.cpuModel}), ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ` +
      `Node ${machine.node}, ${machine.platform}, ${machine.date}, load average at start ${machine.loadAverage.join(" ")}`,
  );
  out.push(
    `provider: in-process, answers at once with ${report.images.map((i) => `${i.size} PNG (${(i.bytes / 1e6).toFixed(1)} MB)`).join(", ")}; app log level ${options.logLevel}`,
  );
  out.push("All times in ms.");

  const queue = results.queue;
  if (queue?.idleSubmit || queue?.burstSubmit) {
    out.push("", "1. Acknowledge: engine.submit (generate), workers stopped");
    const rows: string[][] = [["", "p50", "p99", "max"]];
    if (queue.idleSubmit)
      rows.push([`one at a time, idle (${queue.idleSubmit.n})`, ...pcts(queue.idleSubmit)]);
    if (queue.burstSubmit) {
      rows.push([
        `${queue.burstSubmit.n} at once, ${queue.burstSubmit.threads} threads (all answered in ${fmt(queue.burstSubmit.wallMs)})`,
        ...pcts(queue.burstSubmit),
      ]);
    }
    out.push(table(rows));
  }

  if (queue?.overhead || queue?.throughput) {
    out.push("", "2. Engine time per turn beside the provider's");
    const rows: string[][] = [["", "p50", "p99", "max"]];
    if (queue.overhead) {
      rows.push([
        `one turn at a time (${queue.overhead.pairs} generates, then an edit of each):`,
        "",
        "",
        "",
      ]);
      rows.push(
        ...turnRows("generate", queue.overhead.generate),
        ...turnRows("edit    ", queue.overhead.edit),
      );
    }
    if (queue.throughput) {
      const f = queue.throughput.figures;
      rows.push([`under load (the throughput run, concurrency ${queue.concurrency}):`, "", "", ""]);
      rows.push(
        ["generate  turn (running → finished)", ...pcts(f.turn)],
        ["   in the provider", ...pcts(f.provider)],
        ["   engine overhead (turn − provider)", ...pcts(f.overhead)],
      );
    }
    out.push(table(rows));
  }

  if (queue?.throughput) {
    const t = queue.throughput;
    out.push(
      "",
      `3. Throughput: ${count(t.turns)} queued generates (2K PNG), worker concurrency ${queue.concurrency}`,
    );
    out.push(
      table([
        ["turns per second", t.turnsPerSecond.toFixed(1)],
        ["drained in (s, from starting the workers)", (t.wallMs / 1000).toFixed(2)],
        ["failed turns", String(t.figures.failed)],
      ]),
    );
  }

  const memory = results.memory;
  if (memory) {
    out.push(
      "",
      `4. Memory: ${memory.turns} edits of 2K images in flight (provider holds each ${memory.holdMs} ms), ` +
        `RSS sampled every ${memory.sampleMs} ms`,
    );
    out.push(
      table([
        ["", "MB"],
        ["RSS before the edits (after a first image in each thread)", mb(memory.baseline.rss)],
        ["peak RSS while they ran", mb(memory.peak.rss)],
        ["peak − before", mb(memory.peak.rss - memory.baseline.rss)],
        ["peak heapUsed / arrayBuffers", `${mb(memory.peak.heapUsed)} / ${mb(memory.peak.arrayBuffers)}`],
        ["process max RSS, start-up included", mb(memory.processMaxRss)],
        ["provider calls in flight at once (max)", String(memory.peakInFlight)],
        ["all edits finished in (s)", (memory.wallMs / 1000).toFixed(2)],
        ["failed turns", String(memory.figures.failed)],
      ]),
    );
  }

  const chain = results.chain;
  if (chain) {
    const w = chain.window;
    const firstLabel = `edits 1–${w}`;
    const lastLabel = `edits ${count(chain.edits - w + 1)}–${count(chain.edits)}`;
    out.push(
      "",
      `5. Long thread: ${count(chain.edits)} edits in one thread, ${chain.imageSize} PNG (${(chain.imageBytes / 1e6).toFixed(1)} MB), ` +
        "each submitted after the previous finished",
    );
    const rows: string[][] = [
      [
        "",
        `${firstLabel} p50`,
        "p99",
        `${lastLabel} p50`,
        "p99",
        "ratio p50",
        `new thread after, ${firstLabel} p50`,
      ],
    ];
    const row = (label: string, pick: (f: TurnFigures) => Summary) => {
      const a = pick(chain.first);
      const b = pick(chain.last);
      const c = pick(chain.fresh);
      rows.push([
        label,
        fmt(a.p50),
        fmt(a.p99),
        fmt(b.p50),
        fmt(b.p99),
        `${(b.p50 / a.p50).toFixed(2)}×`,
        fmt(c.p50),
      ]);
    };
    row("submit (acknowledge)", (f) => f.submit);
    row("turn (running → finished)", (f) => f.turn);
    row("engine overhead (turn − provider)", (f) => f.overhead);
    row("whole job (runTurn)", (f) => f.handler);
    row("to start (submit called → runTurn)", (f) => f.toStart);
    out.push(table(rows));
    out.push(
      "   p50 per 100 edits along the thread:",
      table(
        [
          ["edits", "submit", "turn", "overhead"],
          ...chain.blocks.map((b) => [
            `${count(b.from)}–${count(b.to)}`,
            fmt(b.submitP50),
            fmt(b.turnP50),
            fmt(b.overheadP50),
          ]),
        ],
        "     ",
      ),
    );
    out.push(
      table([
        [`whole thread, one edit after another`, `${chain.turnsPerSecond.toFixed(1)} turns/s`],
        [`engine.history() of the thread (${count(chain.historyTurns)} turns)`, `${fmt(chain.historyMs)} ms`],
        ["failed turns", String(chain.failed)],
      ]),
    );
  }

  for (const error of report.errors) out.push("", `NOT MEASURED: ${error}`);
  if (report.totalSeconds !== undefined) {
    const cpu = report.cpu;
    const other =
      cpu?.otherSeconds == null
        ? ""
        : `; CPU time: benchmark ${cpu.benchSeconds.toFixed(0)} s, other processes ${cpu.otherSeconds.toFixed(0)} s` +
          (backend.kind === "pg" ? " (the PostgreSQL server included)" : "");
    out.push("", `Benchmark took ${report.totalSeconds.toFixed(0)} s${other}.`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
}
