import type { Logger } from "./logger.ts";

/** One thing the process needs to do its work: up when it answers `true` in time. */
export type HealthCheck = () => boolean | Promise<boolean>;

export interface HealthReport {
  ok: boolean;
  checks: Record<string, "up" | "down">;
  /** The checks that are down, in the order they were added. */
  down: string[];
}

/**
 * What `GET /healthz` asks: the database and the queue (added by the app), and the platform connections the
 * process holds (added by whoever starts them). Every check runs at once, each within `timeoutMs`, so one
 * that hangs (a database that stopped answering) makes its own name down instead of the whole answer late.
 * Why a check failed goes to the log only: errors can carry hosts and user names, never to the response.
 */
export class HealthChecks {
  readonly #checks = new Map<string, HealthCheck>();
  readonly #logger: Logger;
  readonly #timeoutMs: number;

  constructor(logger: Logger, timeoutMs = 2_000) {
    this.#logger = logger;
    this.#timeoutMs = timeoutMs;
  }

  /** Adds a named check; a name given twice is a wiring mistake, so it throws. */
  add(name: string, check: HealthCheck): void {
    if (this.#checks.has(name)) throw new Error(`health check ${name} is added twice`);
    this.#checks.set(name, check);
  }

  async run(): Promise<HealthReport> {
    const entries = [...this.#checks];
    const results = await Promise.all(entries.map(([name, check]) => this.#up(name, check)));
    const checks: Record<string, "up" | "down"> = {};
    const down: string[] = [];
    for (const [index, [name]] of entries.entries()) {
      checks[name] = results[index] ? "up" : "down";
      if (!results[index]) down.push(name);
    }
    return { ok: down.length === 0, checks, down };
  }

  async #up(name: string, check: HealthCheck): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), this.#timeoutMs);
    });
    try {
      const answer = await Promise.race([Promise.resolve().then(check), late]);
      if (answer === "late") {
        this.#logger.warn({ check: name, timeoutMs: this.#timeoutMs }, "health check timed out");
        return false;
      }
      if (answer !== true) this.#logger.warn({ check: name }, "health check down");
      return answer === true;
    } catch (error) {
      this.#logger.warn({ err: error, check: name }, "health check failed");
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}
