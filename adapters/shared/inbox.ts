import type { Platform } from "../../src/domain.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import { killPoint } from "../../src/failpoints.ts";
import type { Logger } from "../../src/logger.ts";
import type { Inbox, InboxEntry } from "../../src/ports.ts";

/**
 * Record, acknowledge, then work: every adapter writes what a person sent into the inbox (one insert) before
 * it acknowledges it, and does everything slow — downloads, checks that read the database, recording the turn
 * — after, from the recorded event. The process that received an event works it at once; if that process dies
 * (or the work fails for a reason that may pass, such as the database), the event's hold lapses and the next
 * sweep, in any process, takes it over. So an acknowledged event always ends recorded, or explained to the
 * person; a platform's replay of it finds its row and does nothing.
 */

export interface InboxWorkerOptions {
  inbox: Inbox;
  platform: Platform;
  logger: Logger;
  /**
   * Works one event to its end: downloads, checks, records its turn. Returning finishes the event. An error
   * with a message for the person (an `AppError` that is not `internal`: a bad attachment, a limit) is passed to
   * `explain` and finishes it too; any other (the database, a crash) leaves it to be taken again after its hold.
   */
  work(entry: InboxEntry): Promise<void>;
  /**
   * Tells the person who sent the event, privately where the platform allows, why it came to nothing; also when
   * it was taken `maxAttempts` times without finishing (`gave_up`).
   */
  explain(entry: InboxEntry, error: AppError): Promise<void>;
  /**
   * Asks the sender to confirm (`confirmation_needed`: "Draw it for about $X?") with buttons that carry the
   * event's id for `confirm` and `decline`. The event then waits, parked, for the answer.
   */
  ask(entry: InboxEntry, question: AppError): Promise<void>;
  /** How long a process holds an event it works before another may take it over; 2 minutes by default. */
  holdMs?: number | undefined;
  /** How often unfinished events are looked for; a quarter of `holdMs` by default (at most 30 s). */
  sweepMs?: number | undefined;
  /** Takes before giving up, the first included; 5 by default. */
  maxAttempts?: number | undefined;
}

/** Finished events are kept this long: their keys catch a platform's late replays. */
const KEEP_FINISHED_MS = 7 * 24 * 3600_000;
const PRUNE_EVERY_MS = 3600_000;
const SWEEP_BATCH = 20;
/** A "Draw it for about $X?" answered later than this is refused: the request is sent again instead. */
export const ANSWER_WITHIN_MS = 10 * 60_000;
const NOT_RECORDED = "Sorry, that request could not be recorded. Please try again.";

export class InboxWorker {
  readonly #options: InboxWorkerOptions;
  readonly #holdMs: number;
  readonly #sweepMs: number;
  readonly #maxAttempts: number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | null = null;
  #prunedAt = 0;
  #stopped = false;
  /** Events this process is working now: a sweep that finds one lapsed leaves it to the work in progress. */
  readonly #working = new Set<number>();

  constructor(options: InboxWorkerOptions) {
    this.#options = options;
    this.#holdMs = options.holdMs ?? 120_000;
    this.#sweepMs = options.sweepMs ?? Math.min(30_000, Math.max(250, this.#holdMs / 4));
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#log = options.logger;
  }

  /**
   * Records an event; acknowledge it once this resolves, then pass the entry to `work`. Null when the event was
   * recorded before (a platform's retry): acknowledge it and do nothing more. Throws when the database cannot
   * take it: then do not acknowledge, so the platform reports a failure or sends it again.
   */
  async receive(kind: string, key: string, payload: unknown): Promise<InboxEntry | null> {
    killPoint("inbox:received", kind);
    const entry = await this.#options.inbox.receive(
      { platform: this.#options.platform, key, kind, payload },
      this.#holdMs,
    );
    killPoint("inbox:recorded", kind);
    return entry;
  }

  /** Works a recorded event, then marks it finished. Never rejects: a failure leaves it to the sweep. */
  async work(entry: InboxEntry): Promise<void> {
    if (this.#working.has(entry.id)) return;
    this.#working.add(entry.id);
    try {
      await this.#options.work(entry);
    } catch (error) {
      const refusal = asAppError(error);
      if (refusal.code === "confirmation_needed") {
        await this.#park(entry, refusal);
        return;
      }
      if (refusal.code === "internal") {
        this.#log.warn(
          { err: error, event: entry.key, attempt: entry.attempts },
          "could not work an event; it is taken again later",
        );
        return;
      }
      await this.#explain(entry, refusal);
    } finally {
      this.#working.delete(entry.id);
    }
    killPoint("inbox:worked", entry.kind);
    await this.#finish(entry, "done");
  }

  /**
   * The sender said "Draw it": the parked event is worked again, confirmed. False when it was answered already
   * (a second click) or the answer came after `ANSWER_WITHIN_MS`.
   */
  async confirm(id: number): Promise<boolean> {
    const entry = await this.#answered(() => this.#options.inbox.resume(id, this.#holdMs, ANSWER_WITHIN_MS));
    if (!entry) return false;
    void this.work(entry);
    return true;
  }

  /** The sender said no: the parked event ends. False when it was answered already. */
  async decline(id: number): Promise<boolean> {
    return (await this.#answered(async () => (await this.#options.inbox.decline(id)) || null)) !== null;
  }

  /**
   * The question is on screen a moment before its event is parked (asked, then parked): an answer that comes
   * in between is tried again for up to a second before it counts as answered already.
   */
  async #answered<T>(answer: () => Promise<T | null>): Promise<T | null> {
    for (let attempt = 0; ; attempt++) {
      const result = await answer();
      if (result !== null || attempt === 4) return result;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Takes over what earlier processes left (at once), then keeps looking every `sweepMs`. */
  start(): void {
    this.#stopped = false;
    void this.sweep();
    this.#timer = setInterval(() => void this.sweep(), this.#sweepMs);
    this.#timer.unref();
  }

  /** Stops sweeping and waits for a sweep in progress. Events being worked stay held, and lapse if unfinished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#sweeping;
  }

  /** One pass: works every unfinished event whose hold lapsed, oldest first, one at a time. */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = null;
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    try {
      await this.#prune();
      for (;;) {
        if (this.#stopped) return;
        const entries = await this.#options.inbox.takeLapsed(
          this.#options.platform,
          this.#holdMs,
          SWEEP_BATCH,
        );
        for (const entry of entries) {
          if (this.#stopped) return;
          if (this.#working.has(entry.id)) continue; // slow, but in hand: now held again
          if (entry.attempts > this.#maxAttempts) await this.#giveUp(entry);
          else {
            this.#log.info({ event: entry.key, attempt: entry.attempts }, "taking over an unfinished event");
            await this.work(entry);
          }
        }
        if (entries.length < SWEEP_BATCH) return;
      }
    } catch (error) {
      this.#log.warn({ err: error }, "inbox sweep failed; trying again later");
    }
  }

  /** Asks, then parks the event; if the question cannot be asked, the event is taken again after its hold. */
  async #park(entry: InboxEntry, question: AppError): Promise<void> {
    try {
      await this.#options.ask(entry, question);
      await this.#options.inbox.park(entry.id);
    } catch (error) {
      this.#log.warn({ err: error, event: entry.key }, "could not ask to confirm; asking again later");
    }
  }

  async #giveUp(entry: InboxEntry): Promise<void> {
    this.#log.error({ event: entry.key, attempts: entry.attempts - 1 }, "giving up on an event");
    await this.#explain(entry, new AppError("gave_up", "inbox gave up", { userMessage: NOT_RECORDED }));
    await this.#finish(entry, "gave_up");
  }

  async #explain(entry: InboxEntry, error: AppError): Promise<void> {
    await this.#options
      .explain(entry, error)
      .catch((failure: unknown) => this.#log.warn({ err: failure, event: entry.key }, "could not explain"));
  }

  async #finish(entry: InboxEntry, outcome: "done" | "gave_up"): Promise<void> {
    // Not finished, it is worked again after its hold; the work is idempotent (the event's key makes one turn).
    await this.#options.inbox
      .finish(entry.id, outcome)
      .catch((error: unknown) =>
        this.#log.warn({ err: error, event: entry.key }, "could not finish an event"),
      );
  }

  async #prune(): Promise<void> {
    if (Date.now() - this.#prunedAt < PRUNE_EVERY_MS) return;
    this.#prunedAt = Date.now();
    const pruned = await this.#options.inbox.prune(new Date(Date.now() - KEEP_FINISHED_MS));
    if (pruned > 0) this.#log.info({ pruned }, "forgot finished events");
  }
}
