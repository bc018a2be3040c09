import type { ImageRecord, Platform } from "../../src/domain.ts";
import { platformOf } from "../../src/domain.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, Intent } from "../../src/ports.ts";

/**
 * What every chat adapter does with what people send, whatever the platform: turn a click on a result's button
 * into an intent, and say what went wrong in words a person can act on. (Recording and acknowledging: see
 * `inbox.ts`.)
 */

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
 * What a click asks for, with the image it names (checked as `buttonImage` does): Undo (the head moves to that
 * image's parent), Variations of the image, Regenerate (the turn that made it, asked again), Use #n (the next edit
 * starts from it). Each acts on the image it sits under, never on whatever is newest.
 */
export async function buttonIntent(
  engine: ConversationEngine,
  click: { action: ButtonAction; imageId: string; userId: string; platform: Platform },
): Promise<{ intent: Intent; image: ImageRecord }> {
  const image = await buttonImage(engine, click.imageId, click.platform);
  const base = { threadKey: image.threadKey, userId: click.userId };
  switch (click.action) {
    case "undo":
      return { image, intent: { ...base, kind: "undo", targetImageId: image.id } };
    case "variations":
      return { image, intent: { ...base, kind: "variation", targetImageId: image.id } };
    case "use":
      return { image, intent: { ...base, kind: "select", targetImageId: image.id } };
    case "regenerate":
      // Drawn again as it was asked: an edit re-runs on the image it edited (a sibling), not from scratch.
      return { image, intent: { ...base, kind: "generate", repeatOf: image.turnId } };
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

/** A "Draw it" or "Cancel" clicked a second time, or after the question lapsed (`ANSWER_WITHIN_MS`). */
export const ANSWERED =
  "That question was answered already, or it has expired (after 10 minutes). Send the request again to draw it.";

/** Someone else's "Draw it for about $X?". */
export const NOT_YOURS = "Only the person who asked can answer this.";
