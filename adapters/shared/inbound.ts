import type { ImageRecord, Platform } from "../../src/domain.ts";
import { platformOf } from "../../src/domain.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, Intent } from "../../src/ports.ts";

/**
 * What every chat adapter does with what people send, whatever the platform: acknowledge a request once it is
 * recorded (within the platform's 3 s), turn a click on a result's button into an intent, and say what went
 * wrong in words a person can act on.
 */

// ---------------------------------------------------------------------------------------------------------
// Record, then acknowledge
// ---------------------------------------------------------------------------------------------------------

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The promise's outcome as a value, so it can be awaited more than once and never rejects unobserved. */
function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** The settled outcome, or null when it takes longer than `ms`. */
async function withDeadline<T>(promise: Promise<Settled<T>>, ms: number): Promise<Settled<T> | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long an adapter waits for a request to be recorded before it acknowledges anyway (platforms allow 3 s). */
const ACK_GUARD_MS = 2000;

export interface AcknowledgeSteps<T, A> {
  /** Recording the request: downloads, validation that needs the database, `engine.submit`. */
  recording: Promise<T>;
  /** How long to wait for it before acknowledging anyway; `ACK_GUARD_MS` by default. */
  guardMs?: number | undefined;
  /** The recording failed within the guard: answer the person privately instead of acknowledging. */
  refuse(error: unknown): Promise<void>;
  /** Acknowledges the request; what it returns is handed to `explainLate`. */
  acknowledge(): Promise<A>;
  /** The recording failed after the acknowledgement went out: take back what it showed, explain privately. */
  explainLate(error: unknown, acknowledged: A): Promise<void>;
}

/**
 * Record, then acknowledge, so nothing acknowledged is lost: a crash before the acknowledgement makes the
 * platform report a failure (and the person try again) rather than show a request that nothing stands behind.
 * Recording is fast, but a burst on a busy database or a slow download can approach the platform's 3 s; past
 * `guardMs` the request is acknowledged anyway and the recording finishes behind it.
 *
 * Resolves as soon as the platform has its answer (`acknowledged` is null when the request was refused);
 * `outcome` settles with the recording, after a late failure has been explained.
 */
export async function recordThenAcknowledge<T, A>(
  steps: AcknowledgeSteps<T, A>,
): Promise<{ acknowledged: A | null; outcome: Promise<Settled<T>> }> {
  const recording = settle(steps.recording);
  const early = await withDeadline(recording, steps.guardMs ?? ACK_GUARD_MS);
  if (early && !early.ok) {
    await steps.refuse(early.error);
    return { acknowledged: null, outcome: Promise.resolve(early) };
  }
  const acknowledged = await steps.acknowledge();
  const outcome = early
    ? Promise.resolve(early)
    : recording.then(async (late) => {
        if (!late.ok) await steps.explainLate(late.error, acknowledged);
        return late;
      });
  return { acknowledged, outcome };
}

// ---------------------------------------------------------------------------------------------------------
// Buttons under a result
// ---------------------------------------------------------------------------------------------------------

/** The buttons under a result; each acts on the image it sits under. */
export type ButtonAction = "undo" | "variations" | "regenerate" | "use";

function imageGone(imageId: string): AppError {
  return new AppError("image_not_found", `image ${imageId} not found`, {
    userMessage: "That image is no longer available.",
  });
}

/** The image a button names, when it still exists and belongs to a thread of this platform. */
export async function buttonImage(
  engine: ConversationEngine,
  imageId: string,
  platform: Platform,
): Promise<ImageRecord> {
  const image = await engine.getImage(imageId);
  if (!image || platformOf(image.threadKey) !== platform) throw imageGone(imageId);
  return image;
}

/**
 * What a click asks for, with the image it names (checked as `buttonImage` does): Undo (the thread's head moves
 * back), Variations of the image, Regenerate (its prompt and settings drawn again), Use #n (the next edit starts
 * from it).
 */
export async function buttonIntent(
  engine: ConversationEngine,
  click: { action: ButtonAction; imageId: string; userId: string; platform: Platform },
): Promise<{ intent: Intent; image: ImageRecord }> {
  const image = await buttonImage(engine, click.imageId, click.platform);
  const base = { threadKey: image.threadKey, userId: click.userId };
  switch (click.action) {
    case "undo":
      return { image, intent: { ...base, kind: "undo" } };
    case "variations":
      return { image, intent: { ...base, kind: "variation", targetImageId: image.id } };
    case "use":
      return { image, intent: { ...base, kind: "select", targetImageId: image.id } };
    case "regenerate": {
      const origin = await engine.getTurn(image.turnId);
      if (!origin) throw imageGone(image.id);
      return { image, intent: { ...base, kind: "generate", prompt: origin.prompt, params: origin.params } };
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Telling people what went wrong
// ---------------------------------------------------------------------------------------------------------

/** What to tell a person about a request that failed; an unexpected error is logged with its stack. */
export function userMessage(error: unknown, log: Logger, where: string): string {
  const appError = asAppError(error);
  if (appError.code === "internal") log.error({ err: error, where }, "request failed");
  return appError.userMessage;
}
