import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pLimit, { type LimitFunction } from "p-limit";
import {
  type BlobRef,
  DEFAULT_PARAMS,
  type ImageParams,
  type ImageRecord,
  type OutputFormat,
  type Platform,
  platformOf,
  TERMINAL_STATUSES,
  type Thread,
  type ThreadKey,
  type Turn,
  type UsageEntry,
} from "../domain.ts";
import { AppError, asAppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { WorkMetrics } from "../metrics.ts";
import type {
  BlobStore,
  BudgetCap,
  ClaimStore,
  ConversationEngine,
  ConversationStore,
  FinishedEvent,
  ImageInput,
  ImageProvider,
  ImageResult,
  Intent,
  JobAttempt,
  NewImage,
  ProgressEvent,
  Submitted,
  ThreadHistory,
  TurnJob,
  TurnMessageRole,
  TurnObserver,
  TurnOutcome,
  TurnQueue,
  UsageAnswer,
  UsageQuery,
} from "../ports.ts";
import { checkParams, checkPrompt } from "../request/checks.ts";
import { detectFormat, imageSize } from "./image-checks.ts";
import { askIfCostly, DRAWING_KINDS, ledgerFor, limitsFor, turnEstimate } from "./spending.ts";

export interface EngineOptions {
  /** A turn that failed retryably this many times fails for good (crashed attempts count). */
  maxAttempts?: number;
  /** Provider calls this process makes at once, whatever the platform (`WORKER_CONCURRENCY`). */
  providerConcurrency?: number;
  /** The longest we wait on a provider's `retry-after` before handing the turn back to the queue. */
  maxRetryAfterMs?: number;
  /** Reference images per edit (gpt-image-2 takes 16 inputs: the image being edited plus 15). */
  maxReferenceImages?: number;
  /** All of a turn's reference images together. */
  maxReferenceBytes?: number;
  /**
   * Failed delivery attempts after which a turn is late (the platform down for long): the outcome stays in the
   * store, the job completes so the thread's later turns are not held behind it, and the delivery is retried
   * every `lateDeliveryRetryMs`. Keep it below the queue's own retry limit.
   */
  maxDeliveryAttempts?: number;
  lateDeliveryRetryMs?: number;
  /** Drawing turns (generate, edit, variation) one person may start in a rolling hour (`RATE_USER_PER_HOUR`). */
  turnsPerUserHour?: number | null;
  /** People no limit applies to (`ADMIN_USERS`). */
  unlimited?: (platform: Platform, userId: string) => boolean;
  /** Spend caps every drawing turn is reserved against (`BUDGET_*`); none by default. */
  budgets?: readonly BudgetCap[];
  /** The models the provider calls, to estimate what a turn will cost. */
  models?: { image: string; think: string };
  /**
   * A drawing turn estimated above this many dollars is not recorded until the person confirms: `submit`
   * throws `confirmation_needed` ("Draw it for about $X?") unless the intent is `confirmed` (`CONFIRM_ABOVE_USD`).
   * Null (the default here): never ask.
   */
  confirmAboveUsd?: number | null;
  /** How often a running turn looks whether it was canceled from another process. */
  cancelPollMs?: number;
}

type ImageSize = { width: number; height: number };

/** A valid intent, ready to record: its prompt and parameters, and the sizes of the images it will send. */
interface Prepared {
  prompt: string;
  params: ImageParams;
  inputs: ImageSize[];
}

function sizeOf(image: ImageRecord | null): ImageSize[] {
  return image ? [{ width: image.width, height: image.height }] : [];
}

const GAVE_UP_MESSAGE = "This request could not be finished after many tries, so it was given up. Try again.";

const CRASH_LOOP_MESSAGE =
  "This request stopped threadcanvas each time it ran, so it was given up. Try other words or settings.";

const VARIATION_INSTRUCTION =
  "Create a new variation of this image. Keep its subject, composition and style, and vary the details.";

/**
 * The platform-neutral conversation engine. `submit` validates an intent, records the turn and enqueues it —
 * no provider call. `runTurn` (called by the queue's workers) does the work, stores every image with its
 * parent, moves the thread's head, and hands the outcome to the platform's observer.
 *
 * Longer than our usual ~400 lines on purpose: submitting and running are two halves of one contract (what
 * `submit` accepts is exactly what `runTurn` can run: the same base image, the same inherited parameters), and
 * keeping them in one class keeps those rules side by side. The money rules (estimates, limits, the question
 * before a costly turn, the ledger of each call) are in `spending.ts`. Cancel and the two sweeps at the end (late
 * deliveries, turns the queue gave up on) finish or stop what `runTurn` started, with its private delivery rules;
 * they are the next thing to move out (the class is past 750 lines).
 */
export class Engine implements ConversationEngine {
  readonly #store: ConversationStore;
  readonly claims: ClaimStore;
  readonly #blobs: BlobStore;
  readonly #provider: ImageProvider;
  readonly #queue: TurnQueue;
  readonly #logger: Logger;
  readonly #observers = new Map<Platform, TurnObserver>();
  readonly #options: Required<EngineOptions>;
  readonly #providerSlots: LimitFunction;
  /** Turns this process is running, to abort when they are canceled. */
  readonly #running = new Map<string, AbortController>();
  readonly #metrics: WorkMetrics | undefined;

  constructor(deps: {
    store: ConversationStore;
    /** For adapters: what they must do once across processes is claimed here (`ConversationEngine.claims`). */
    claims: ClaimStore;
    blobs: BlobStore;
    provider: ImageProvider;
    queue: TurnQueue;
    logger: Logger;
    options?: EngineOptions;
    /** Counts turns, waits, provider calls, deliveries and spend as they happen (`/metrics`). */
    metrics?: WorkMetrics;
  }) {
    this.#store = deps.store;
    this.#metrics = deps.metrics;
    this.claims = deps.claims;
    this.#blobs = deps.blobs;
    this.#provider = deps.provider;
    this.#queue = deps.queue;
    this.#logger = deps.logger;
    this.#options = {
      maxAttempts: 4,
      providerConcurrency: 4,
      maxRetryAfterMs: 60_000,
      maxReferenceImages: 15,
      maxReferenceBytes: 50 * 1024 * 1024,
      maxDeliveryAttempts: 15,
      lateDeliveryRetryMs: 5 * 60_000,
      turnsPerUserHour: null,
      unlimited: () => false,
      budgets: [],
      models: { image: "gpt-image-2", think: "gpt-5.5" },
      confirmAboveUsd: null,
      cancelPollMs: 2_000,
      ...deps.options,
    };
    this.#providerSlots = pLimit(this.#options.providerConcurrency);
  }

  observe(platform: Platform, observer: TurnObserver): void {
    this.#observers.set(platform, observer);
  }

  // -------------------------------------------------------------------------------------------------------
  // Submitting
  // -------------------------------------------------------------------------------------------------------

  async submit(asked: Intent): Promise<Submitted> {
    platformOf(asked.threadKey); // a key without a known platform is a programming error: throw early
    const intent = asked.repeatOf ? await this.#repeated(asked, asked.repeatOf) : asked;
    const thread = await this.#store.getThread(intent.threadKey);
    const prepared = await this.#prepare(intent, thread);
    const references = await this.#storeReferences(intent.referenceImages ?? []);
    const inputs = [...prepared.inputs, ...references.sizes];
    const estimateUsd = turnEstimate(intent.kind, { ...prepared, inputs }, this.#options);
    askIfCostly(intent, estimateUsd, this.#options);

    const { turn, created } = await this.#store.recordTurn(
      {
        threadKey: intent.threadKey,
        kind: intent.kind,
        prompt: prepared.prompt,
        params: prepared.params,
        userId: intent.userId,
        sourceMessageId: intent.sourceMessageId ?? null,
        idempotencyKey: intent.idempotencyKey ?? null,
        targetImageId: intent.targetImageId ?? null,
        referenceImages: references.refs,
        newThread: {
          title: intent.newThread?.title ?? prepared.prompt.slice(0, 200),
          meta: intent.newThread?.meta ?? {},
        },
        ...(intent.place ? { place: intent.place } : {}),
        estimateUsd,
        ...limitsFor(intent, platformOf(intent.threadKey), this.#options),
      },
      (recorded, tx) => this.#queue.enqueue({ turnId: recorded.id, threadKey: recorded.threadKey }, tx),
    );
    const position = await this.#store.turnsAhead(turn);
    const log = this.#logger.child({ turnId: turn.id, thread: turn.threadKey });
    if (created) {
      log.info({ kind: turn.kind, position, params: turn.params }, "turn accepted");
      this.#progress({ type: "queued", turn, position });
    } else {
      log.info("duplicate request ignored (idempotency key seen before)");
    }
    return { turn, created, position };
  }

  /** Validates the intent against the thread as it is now; throws AppError and writes nothing when invalid. */
  async #prepare(intent: Intent, thread: Thread | null): Promise<Prepared> {
    const flags = intent.params ?? {};
    const needsThread = intent.kind !== "generate";
    if (needsThread && !thread) {
      throw new AppError("no_image_to_edit", `thread ${intent.threadKey} does not exist`, {
        userMessage: "There is no image in this thread yet. Start one with /imagine <prompt>.",
      });
    }
    if (intent.targetImageId) await this.#imageInThread(intent.targetImageId, intent.threadKey);

    switch (intent.kind) {
      case "generate":
        return {
          prompt: checkPrompt(intent.prompt ?? ""),
          params: checkParams({ ...DEFAULT_PARAMS, ...flags }),
          inputs: [],
        };
      case "edit": {
        const prompt = checkPrompt(intent.prompt ?? "");
        const base = await this.#baseForNewTurn(intent, thread);
        // An edit keeps the look of what it edits (size, format, quality) unless the reply says otherwise. When
        // that image does not exist yet, the newest pending turn of the thread is the one that will make it.
        const inherited = base ? await this.#paramsOf(base) : await this.#pendingParams(intent.threadKey);
        const params = checkParams({ ...inherited, n: 1, think: false, ...flags });
        return { prompt, params, inputs: sizeOf(base) };
      }
      case "variation": {
        const base = await this.#baseForNewTurn(intent, thread);
        const origin = base ? await this.#store.getTurn(base.turnId) : null;
        // Shown as what the variation is of: the request that began the image's line, not its last edit.
        const prompt = intent.prompt?.trim()
          ? checkPrompt(intent.prompt)
          : base
            ? (await this.#lineage(base)).original
            : "";
        const inherited = origin?.params ?? DEFAULT_PARAMS;
        return {
          prompt,
          params: checkParams({ ...inherited, think: false, ...flags }),
          inputs: sizeOf(base),
        };
      }
      case "undo":
      case "select":
        if (intent.kind === "select" && !intent.targetImageId) {
          throw new AppError("image_not_found", "select needs targetImageId", {
            userMessage: "Pick an image first.",
          });
        }
        return { prompt: "", params: { ...DEFAULT_PARAMS }, inputs: [] };
    }
  }

  /**
   * The image a new edit/variation will start from, as far as we can tell at submit time. When the thread has
   * no image yet but an earlier turn is still queued (an /imagine followed quickly by a reply), the edit is
   * accepted and waits for it; the real base is fixed when the turn runs.
   */
  async #baseForNewTurn(intent: Intent, thread: Thread | null): Promise<ImageRecord | null> {
    const id = intent.targetImageId ?? thread?.headImageId ?? null;
    if (id) return this.#store.getImage(id);
    const pending = thread ? await this.#store.unfinishedTurns(1, thread.key) : [];
    if (pending.length > 0) return null;
    // The turn that was pending may have finished between the two reads: its image is the head now.
    const now = thread ? await this.#store.getThread(thread.key) : null;
    if (now?.headImageId) return this.#store.getImage(now.headImageId);
    throw new AppError("no_image_to_edit", `thread ${intent.threadKey} has no image`, {
      userMessage: "There is no image in this thread to edit yet. Start with /imagine <prompt>.",
    });
  }

  async #pendingParams(threadKey: ThreadKey): Promise<ImageParams> {
    const pending = await this.#store.unfinishedTurns(1000, threadKey);
    return (
      pending.findLast((turn) => turn.kind === "generate" || turn.kind === "edit")?.params ?? DEFAULT_PARAMS
    );
  }

  async #paramsOf(image: ImageRecord): Promise<ImageParams> {
    const origin = await this.#store.getTurn(image.turnId);
    return origin?.params ?? DEFAULT_PARAMS;
  }

  async #imageInThread(imageId: string, threadKey: ThreadKey): Promise<ImageRecord> {
    const image = await this.#store.getImage(imageId);
    if (!image || image.threadKey !== threadKey) {
      throw new AppError("image_not_found", `image ${imageId} is not in thread ${threadKey}`, {
        userMessage: "That image is not part of this thread.",
      });
    }
    return image;
  }

  async #storeReferences(images: readonly ImageInput[]): Promise<{ refs: BlobRef[]; sizes: ImageSize[] }> {
    if (images.length > this.#options.maxReferenceImages) {
      throw new AppError("unsupported_attachment", `${images.length} reference images`, {
        userMessage: `Attach at most ${this.#options.maxReferenceImages} reference images.`,
      });
    }
    // One cap for all of a turn's references together: what a turn holds in memory stays bounded.
    const total = images.reduce((sum, image) => sum + image.bytes.length, 0);
    if (total > this.#options.maxReferenceBytes) {
      const mb = Math.floor(this.#options.maxReferenceBytes / (1024 * 1024));
      throw new AppError("attachment_too_large", `reference images of ${total} bytes in all`, {
        userMessage: `Reference images must be smaller than ${mb} MB together.`,
      });
    }
    const refs: BlobRef[] = [];
    const sizes: ImageSize[] = [];
    for (const image of images) {
      const format = await detectFormat(image.bytes);
      sizes.push(await imageSize(image.bytes));
      refs.push({ sha256: await this.#blobs.put(image.bytes), format });
    }
    return { refs, sizes };
  }

  /**
   * Regenerate: the turn that made an image, asked again as it was — its kind, prompt, settings, base image and
   * references — so the new image is a sibling of the old one (an edit is re-run on the image it edited, not
   * drawn from scratch from its instruction).
   */
  async #repeated(intent: Intent, turnId: string): Promise<Intent> {
    const origin = await this.#store.getTurn(turnId);
    if (!origin || origin.threadKey !== intent.threadKey || !DRAWING_KINDS.includes(origin.kind)) {
      throw new AppError("image_not_found", `turn ${turnId} cannot be drawn again`, {
        userMessage: "That image can no longer be drawn again.",
      });
    }
    const [made] = await this.#store.getTurnImages(origin.id);
    const references = await Promise.all(
      origin.referenceImages.map(async (ref) => ({
        bytes: await this.#blobs.get(ref.sha256),
        format: ref.format,
      })),
    );
    const { repeatOf: _asked, ...rest } = intent;
    return {
      ...rest,
      kind: origin.kind,
      prompt: origin.prompt,
      params: origin.params,
      targetImageId: origin.kind === "generate" ? null : (made?.parentId ?? origin.targetImageId),
      referenceImages: references,
    };
  }

  /**
   * What an image is, for a prompt that must describe it: the request that began its line and the edits that led
   * to it, oldest first (variations and undo/select in between add nothing: they keep what the image shows).
   */
  async #lineage(image: ImageRecord): Promise<{ original: string; edits: string[] }> {
    const edits: string[] = [];
    let original = "";
    for (
      let at: ImageRecord | null = image;
      at;
      at = at.parentId ? await this.#store.getImage(at.parentId) : null
    ) {
      const made = await this.#store.getTurn(at.turnId);
      if (made?.kind === "edit") edits.unshift(made.prompt);
      if (made?.kind === "generate") {
        original = made.prompt;
        break;
      }
    }
    return { original, edits };
  }

  // -------------------------------------------------------------------------------------------------------
  // Running (called by the queue's workers)
  // -------------------------------------------------------------------------------------------------------

  /** Runs one turn. Throws only to ask the queue for another attempt later. */
  async runTurn(job: TurnJob, attempt: JobAttempt): Promise<void> {
    const log = this.#logger.child({
      turnId: job.turnId,
      thread: job.threadKey,
      attempt: attempt.retryCount,
    });
    const started = await this.#store.startTurn(job.turnId);
    if (!started) {
      // Already finished (a job that ran twice, or a crash after the outcome was saved): only delivery may remain.
      const turn = await this.#store.getTurn(job.turnId);
      if (turn && !turn.deliveredAt) await this.#deliverOrGiveUp(turn, log, true, attempt);
      return;
    }
    log.info({ kind: started.kind }, "turn started");
    if (started.attempts === 1 && started.startedAt) {
      // Both times are the database's clock; a retry's wait would count its earlier attempts' run time.
      const waited = (started.startedAt.getTime() - started.createdAt.getTime()) / 1000;
      this.#metrics?.queueWaited(platformOf(started.threadKey), waited);
    }

    let finished: Turn;
    const startedAt = performance.now();
    if (started.attempts > this.#options.maxAttempts) {
      // Every earlier attempt ended without a word (the process died each time): do not run it again.
      log.error({ attempts: started.attempts }, "turn keeps stopping the process; giving up");
      finished = await this.#store.failTurn(started.id, "crash_loop", CRASH_LOOP_MESSAGE);
      this.#ended(finished);
      await this.#deliverOrGiveUp(finished, log, false, attempt);
      return;
    }
    this.#progress({ type: "running", turn: started });
    const cancel = this.#watchForCancel(started.id);
    try {
      const outcome = await this.#execute(started, AbortSignal.any([attempt.signal, cancel.signal]));
      // Completing a turn canceled meanwhile changes nothing: it stays canceled (and what was billed, billed).
      finished = (await this.#store.completeTurn(started.id, outcome)).turn;
      this.#ended(finished);
      log.info(
        {
          ms: Math.round(performance.now() - startedAt),
          images: outcome.images.length,
          costUsd: finished.costUsd,
        },
        "turn succeeded",
      );
    } catch (thrown) {
      if (cancel.signal.aborted && !attempt.signal.aborted) {
        log.info("turn canceled while it ran; its provider call was aborted");
        finished = (await this.#store.getTurn(started.id)) ?? started;
        this.#ended(finished);
        await this.#deliverOrGiveUp(finished, log, false, attempt);
        return;
      }
      if (attempt.signal.aborted) {
        // Shutting down (or the queue gave up on this attempt): the turn stays running and its job runs again.
        log.warn("turn interrupted; it will run again");
        throw thrown;
      }
      const error = asAppError(thrown);
      if (error.retryable && started.attempts < this.#options.maxAttempts) {
        const waitMs =
          error.retryAfterMs === undefined
            ? null
            : Math.min(error.retryAfterMs, this.#options.maxRetryAfterMs);
        log.warn({ code: error.code, err: error, retryInMs: waitMs }, "turn failed, will retry");
        this.#progress({ type: "retrying", turn: started, reason: error.userMessage, retryInMs: waitMs });
        if (waitMs) await sleep(waitMs, undefined, { signal: attempt.signal }).catch(() => {});
        throw error;
      }
      log.warn({ code: error.code, err: error }, "turn failed");
      finished = await this.#store.failTurn(started.id, error.code, error.userMessage);
      this.#ended(finished);
    } finally {
      cancel.stop();
    }
    await this.#deliverOrGiveUp(finished, log, false, attempt);
  }

  /**
   * Cancels a turn for `userId`, who asked for it or is an admin. Queued, it will not run (nothing is billed);
   * running, its provider call is aborted — here at once, in another process within `cancelPollMs` — and what
   * was billed stays in the ledger. Throws an AppError to show the person when it cannot be canceled.
   */
  async cancel(turnId: string, userId: string): Promise<Turn> {
    const turn = await this.#store.getTurn(turnId);
    if (!turn) {
      throw new AppError("turn_not_found", `turn ${turnId} does not exist`, {
        userMessage: "That request is not known here any more.",
      });
    }
    if (turn.userId !== userId && !this.#options.unlimited(platformOf(turn.threadKey), userId)) {
      throw new AppError("cancel_refused", `${userId} may not cancel turn ${turn.id}`, {
        userMessage: "Only the person who asked, or an admin, can cancel it.",
      });
    }
    const canceled = await this.#store.failTurn(turn.id, "canceled", `Canceled by <@${userId}>.`, "canceled");
    if (canceled.status !== "canceled" || canceled.errorCode !== "canceled") {
      throw new AppError("cancel_refused", `turn ${turn.id} is ${canceled.status}`, {
        userMessage: "Too late to cancel: it has finished.",
      });
    }
    const log = this.#logger.child({ turnId: turn.id, thread: turn.threadKey });
    log.info({ by: userId, was: turn.status }, "turn canceled");
    // A queued turn ends here; a running one is counted by the process running it, when it stops.
    if (turn.status === "queued") this.#ended(canceled);
    const running = this.#running.get(turn.id);
    if (running) running.abort();
    else if (turn.status === "queued") {
      // Shown now rather than when its job comes up behind the thread's other turns; that job only redelivers.
      void this.#deliver(canceled, log, true, new AbortController().signal).catch((error: unknown) =>
        log.warn({ err: error }, "could not show the cancel yet; it is shown when the turn's job runs"),
      );
    }
    return canceled;
  }

  /** Aborts when the turn is canceled: by `cancel` in this process, or seen in the store (another process). */
  #watchForCancel(turnId: string): { signal: AbortSignal; stop(): void } {
    const controller = new AbortController();
    this.#running.set(turnId, controller);
    const poll = setInterval(() => {
      this.#store
        .getTurn(turnId)
        .then((turn) => {
          if (turn?.status === "canceled") controller.abort();
        })
        .catch(() => {});
    }, this.#options.cancelPollMs);
    poll.unref();
    return {
      signal: controller.signal,
      stop: () => {
        clearInterval(poll);
        this.#running.delete(turnId);
      },
    };
  }

  /**
   * Delivery failures go back to the queue (the next attempt is a redelivery), counted apart from the provider's
   * attempts. When `maxDeliveryAttempts` have failed, the turn is late: its job completes so the thread's next
   * turns can run, and `retryLateDeliveries` tries it again every `lateDeliveryRetryMs` until it goes out.
   */
  async #deliverOrGiveUp(turn: Turn, log: Logger, redelivery: boolean, attempt: JobAttempt): Promise<void> {
    try {
      await this.#deliver(turn, log, redelivery, attempt.signal);
    } catch (error) {
      if (attempt.signal.aborted) throw error; // handed back: the delivery runs again after the restart
      const failed = await this.#store.recordDeliveryFailure(turn.id);
      if (failed < this.#options.maxDeliveryAttempts) throw error;
      const retryAt = new Date(Date.now() + this.#options.lateDeliveryRetryMs);
      await this.#store.deferDelivery(turn.id, retryAt);
      this.#metrics?.deliveryDeferred(platformOf(turn.threadKey));
      log.error(
        { err: error, deliveryAttempts: failed, retryAt },
        "delivery keeps failing; the result waits in the store and is retried slowly until it goes out",
      );
    }
  }

  /**
   * Turns whose jobs the queue gave up on (past its retry limit, e.g. handed back at shutdown after shutdown):
   * one still unfinished fails with a message, and each goes back on the queue once more, for delivery only.
   * Their threads' later turns run meanwhile.
   */
  async finishAbandonedTurns(platforms: readonly Platform[]): Promise<number> {
    const jobs = await this.#queue.takeAbandoned(platforms);
    for (const job of jobs) {
      const turn = await this.#store.getTurn(job.turnId);
      if (!turn || turn.deliveredAt) continue;
      if (!TERMINAL_STATUSES.includes(turn.status)) {
        this.#logger.error({ turnId: turn.id, thread: turn.threadKey }, "the queue gave this turn up");
        this.#ended(await this.#store.failTurn(turn.id, "gave_up", GAVE_UP_MESSAGE));
      }
      await this.#queue.enqueue(job);
    }
    return jobs.length;
  }

  /**
   * The late deliveries of these platforms that are due go back on the queue (behind their thread's turns), each
   * claimed so that processes sweeping at once do not both take it. Called on a timer by the workers' process.
   */
  async retryLateDeliveries(platforms: readonly Platform[]): Promise<number> {
    const nextRetryAt = new Date(Date.now() + this.#options.lateDeliveryRetryMs);
    const due = await this.#store.claimDueDeliveries(platforms, nextRetryAt, 100);
    for (const turn of due) await this.#queue.enqueue({ turnId: turn.id, threadKey: turn.threadKey });
    if (due.length > 0) this.#logger.info({ turns: due.length }, "retrying late deliveries");
    return due.length;
  }

  async #execute(turn: Turn, signal: AbortSignal): Promise<TurnOutcome> {
    const thread = await this.#store.getThread(turn.threadKey);
    if (!thread) throw new AppError("thread_not_found", `thread ${turn.threadKey} vanished`);
    const onPartialImage = (partial: { index: number; bytes: Buffer; format: OutputFormat }) =>
      this.#progress({ type: "partial", turn, partial });
    const asker = safetyIdentifier(platformOf(turn.threadKey), turn.userId);
    const ledger = ledgerFor(turn, this.#store, this.#metrics);

    switch (turn.kind) {
      case "generate": {
        // Attachments on a new image (Discord's `image` option, files on a Slack mention) are references: the
        // edits endpoint takes them as inputs, and the result starts a new tree (no parent).
        const result = await this.#result(turn, signal, async () => {
          const references = await this.#referenceInputs(turn);
          const request = {
            prompt: turn.prompt,
            params: turn.params,
            onPartialImage,
            safetyIdentifier: asker,
            ledger,
          };
          return references.length > 0
            ? this.#provider.edit({ ...request, images: references }, signal)
            : this.#provider.generate(request, signal);
        });
        return this.#outcome(result, null);
      }
      case "edit":
      case "variation": {
        const baseId = turn.targetImageId ?? thread.headImageId;
        const base = baseId ? await this.#store.getImage(baseId) : null;
        if (!base) {
          throw new AppError("no_image_to_edit", `thread ${turn.threadKey} has no image`, {
            userMessage: "There is no image in this thread to edit yet. Start with /imagine <prompt>.",
          });
        }
        const result = await this.#result(turn, signal, async () => {
          const images: ImageInput[] = [
            { bytes: await this.#blobs.get(base.sha256), format: base.format },
            ...(await this.#referenceInputs(turn)),
          ];
          const prompt = turn.kind === "edit" ? turn.prompt : await this.#variationPrompt(turn, base);
          return this.#provider.edit(
            { prompt, params: turn.params, images, onPartialImage, safetyIdentifier: asker, ledger },
            signal,
          );
        });
        return this.#outcome(result, base.id);
      }
      case "undo": {
        // Undo under a result goes back from that result, whatever is newest; without one, from the head.
        const fromId = turn.targetImageId ?? thread.headImageId;
        const from = fromId ? await this.#imageInThread(fromId, turn.threadKey) : null;
        if (!from?.parentId) {
          throw new AppError("nothing_to_undo", `image ${fromId} is a first version`, {
            userMessage: "Nothing to undo: this is the first version.",
          });
        }
        return noImages({ imageId: from.parentId }, from.id);
      }
      case "select": {
        const target = await this.#imageInThread(turn.targetImageId ?? "", turn.threadKey);
        return noImages({ imageId: target.id }, thread.headImageId);
      }
    }
  }

  /**
   * What the model is told for a variation: keep the image, vary the details, and what the image is — the request
   * that began its line and the edits that led to it, in order — so a variation of an edit stays that edit.
   */
  async #variationPrompt(turn: Turn, base: ImageRecord): Promise<string> {
    const { original, edits } = await this.#lineage(base);
    const parts = [VARIATION_INSTRUCTION];
    if (original) parts.push(`Original request: ${original}`);
    if (edits.length > 0)
      parts.push(`Edits since, in order:\n${edits.map((edit, i) => `${i + 1}. ${edit}`).join("\n")}`);
    if (turn.prompt && turn.prompt !== original) parts.push(`Asked for this variation: ${turn.prompt}`);
    return parts.join("\n\n");
  }

  async #referenceInputs(turn: Turn): Promise<ImageInput[]> {
    return Promise.all(
      turn.referenceImages.map(async (ref) => ({
        bytes: await this.#blobs.get(ref.sha256),
        format: ref.format,
      })),
    );
  }

  /**
   * What the provider returns for this turn: saved by an earlier attempt, or asked for now (waiting for one of
   * this process's provider slots) and saved at once — the images in the blob store, the rest in the store —
   * before anything else can fail, so no later failure or interruption buys the image again.
   */
  async #result(turn: Turn, signal: AbortSignal, call: () => Promise<ImageResult>): Promise<ResultImages> {
    // Only an earlier attempt can have saved one: the first attempt skips the look-up.
    const saved = turn.attempts > 1 ? await this.#store.providerResult(turn.id) : null;
    if (saved) {
      this.#logger.info({ turnId: turn.id }, "using the provider's result saved by an earlier attempt");
      const images = await Promise.all(
        saved.images.map(async (ref) => ({ ...ref, bytes: await this.#blobs.get(ref.sha256) })),
      );
      return { ...saved, images };
    }
    const result = await this.#providerSlots(async () => {
      signal.throwIfAborted();
      const began = performance.now();
      try {
        return await call();
      } catch (error) {
        // A cancel or a shutdown aborts the call: not the provider's failure.
        if (!signal.aborted) this.#metrics?.providerFailed(asAppError(error).code);
        throw error;
      } finally {
        this.#metrics?.providerCalled(turn.kind, (performance.now() - began) / 1000);
      }
    });
    if (result.images.length === 0) {
      this.#metrics?.providerFailed("provider_unavailable");
      throw new AppError("provider_unavailable", "provider returned no images", { retryable: true });
    }
    const images = await Promise.all(
      result.images.map(async (image) => ({ ...image, sha256: await this.#blobs.put(image.bytes) })),
    );
    await this.#store.saveProviderResult(turn.id, {
      images: images.map(({ sha256, format }) => ({ sha256, format })),
      usage: result.usage,
      requestId: result.requestId,
      revisedPrompt: result.revisedPrompt,
    });
    return { images, usage: result.usage, requestId: result.requestId };
  }

  async #outcome(result: ResultImages, parentId: string | null): Promise<TurnOutcome> {
    const images: NewImage[] = [];
    for (const [index, image] of result.images.entries()) {
      const { width, height } = await imageSize(image.bytes);
      images.push({
        parentId,
        index,
        sha256: image.sha256,
        byteSize: image.bytes.length,
        format: image.format,
        width,
        height,
      });
    }
    return {
      images,
      head: { newImageIndex: 0 },
      baseImageId: parentId,
      usage: result.usage,
      providerRequestId: result.requestId,
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Delivering
  // -------------------------------------------------------------------------------------------------------

  /** A turn reached its end (succeeded, failed or canceled): counted once, by the process that ended it. */
  #ended(turn: Turn): void {
    this.#metrics?.turnEnded(turn.kind, platformOf(turn.threadKey), turn.status);
  }

  #progress(event: ProgressEvent): void {
    const observer = this.#observers.get(platformOf(event.turn.threadKey));
    if (!observer?.progress) return;
    Promise.resolve()
      .then(() => observer.progress?.(event))
      .catch((error: unknown) =>
        this.#logger.warn({ err: error, turnId: event.turn.id }, "progress update failed"),
      );
  }

  /**
   * Hands the outcome to the platform; a delivery that throws makes the job run again (delivery only). When the
   * attempt is aborted (a shutdown past its grace) it stops waiting at once: whatever the platform call still
   * does then is found by the next attempt's read-back, since the turn is not marked delivered.
   */
  async #deliver(turn: Turn, log: Logger, redelivery: boolean, signal: AbortSignal): Promise<void> {
    const observer = this.#observers.get(platformOf(turn.threadKey));
    if (!observer) {
      log.warn("no adapter for this platform is running here; the result waits in the store");
      return;
    }
    const thread = await this.#store.getThread(turn.threadKey);
    if (!thread) return;
    const images = await this.#store.getTurnImages(turn.id);
    const late = turn.deliveryLateAt !== null;
    const event: FinishedEvent = { type: "finished", turn, thread, images, redelivery, late };
    const began = performance.now();
    await untilAborted(observer.deliver(event, signal), signal);
    this.#metrics?.delivered(platformOf(turn.threadKey), (performance.now() - began) / 1000);
    await this.#store.markDelivered(turn.id);
    await observer
      .delivered?.(event)
      .catch((error: unknown) => log.warn({ err: error }, "after-delivery step failed"));
    log.info({ status: turn.status, redelivery, ...(late ? { late } : {}) }, "delivered");
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading
  // -------------------------------------------------------------------------------------------------------

  /** What `/canvas usage` shows a person: their, the channel's and the workspace's spend against the caps. */
  async usage(query: UsageQuery): Promise<UsageAnswer> {
    const admin = this.#options.unlimited(query.platform, query.userId);
    const report = await this.#store.spendReport({ ...query, admin });
    return { report, caps: this.#options.budgets, admin };
  }

  history(threadKey: ThreadKey): Promise<ThreadHistory | null> {
    return this.#store.history(threadKey);
  }

  listThreads(platform: Platform, limit = 20): Promise<Thread[]> {
    return this.#store.listThreads(platform, limit);
  }

  getThread(keyOrAlias: string): Promise<Thread | null> {
    return this.#store.findThread(keyOrAlias);
  }

  addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void> {
    return this.#store.addThreadAlias(alias, threadKey);
  }

  getTurn(turnId: string): Promise<Turn | null> {
    return this.#store.getTurn(turnId);
  }

  getImage(imageId: string): Promise<ImageRecord | null> {
    return this.#store.getImage(imageId);
  }

  updateThreadMeta(threadKey: ThreadKey, meta: Record<string, unknown>): Promise<void> {
    return this.#store.updateThreadMeta(threadKey, meta);
  }

  saveTurnMessage(turnId: string, role: TurnMessageRole, ref: string): Promise<void> {
    return this.#store.saveTurnMessage(turnId, role, ref);
  }

  turnMessage(turnId: string, role: TurnMessageRole): Promise<string | null> {
    return this.#store.turnMessage(turnId, role);
  }

  imageBytes(image: ImageRecord): Promise<Buffer> {
    return this.#blobs.get(image.sha256);
  }

  async unfinishedTurns(platform: Platform): Promise<Turn[]> {
    const turns = await this.#store.unfinishedTurns(1000);
    return turns.filter((turn) => platformOf(turn.threadKey) === platform);
  }
}

/** The promise's outcome, or a rejection as soon as `signal` aborts (the promise then runs on, unwatched). */
async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  promise.catch(() => {}); // a failure after the abort is the next attempt's to find
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** A provider's result with its images in the blob store. */
interface ResultImages {
  images: Array<{ bytes: Buffer; format: OutputFormat; sha256: string }>;
  usage: UsageEntry[];
  requestId: string | null;
}

function noImages(head: { imageId: string }, baseImageId: string | null): TurnOutcome {
  return { images: [], head, baseImageId, usage: [], providerRequestId: null };
}

/**
 * What OpenAI's abuse monitoring knows a person by (`safety_identifier`): a hash of the platform and the user's
 * id, stable across turns, never the id itself. OpenAI can then act on one abuser instead of the whole key.
 */
export function safetyIdentifier(platform: Platform, userId: string): string {
  return createHash("sha256").update(`threadcanvas:${platform}:${userId}`).digest("hex").slice(0, 32);
}
