import type { Turn } from "../../src/domain.ts";
import type { ProgressEvent } from "../../src/ports.ts";

/**
 * Text every platform shows the same way: a turn's status line and why it failed. Pure, like each adapter's
 * own `render.ts`, which wraps this text in the platform's format (Block Kit, Discord markdown).
 */

export type StatusLine =
  | { state: "queued"; position: number }
  | { state: "drawing"; preview?: number }
  | { state: "retrying"; reason: string; retryInMs: number | null }
  | { state: "done"; images: number }
  | { state: "failed"; reason: string };

export function statusText(status: StatusLine): string {
  switch (status.state) {
    case "queued":
      return status.position > 0 ? `⏳ Queued — ${status.position} ahead in this thread` : "⏳ Queued";
    case "drawing":
      return status.preview ? `🎨 Drawing… (preview ${status.preview})` : "🎨 Drawing…";
    case "retrying": {
      const wait = status.retryInMs ? ` in ${Math.ceil(status.retryInMs / 1000)} s` : "";
      return `↻ ${status.reason} Retrying${wait}.`;
    }
    case "done":
      return status.images === 1 ? "✅ Done" : `✅ Done — ${status.images} images`;
    case "failed":
      return `✖ ${status.reason}`;
  }
}

/** Whether a turn with this status can still be canceled (a Cancel button is shown with it). */
export function cancelable(status: StatusLine): boolean {
  return status.state === "queued" || status.state === "drawing" || status.state === "retrying";
}

/** A turn id, as a Cancel button carries it: anything else is not one of ours. */
export const TURN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The status line an engine progress event puts on the turn's message. */
export function progressStatus(event: ProgressEvent): StatusLine {
  switch (event.type) {
    case "queued":
      return { state: "queued", position: event.position };
    case "running":
      return { state: "drawing" };
    case "partial":
      return { state: "drawing", preview: event.partial.index + 1 };
    case "retrying":
      return { state: "retrying", reason: event.reason, retryInMs: event.retryInMs };
  }
}

/** Above a result (or a failure) that could not be delivered when it was ready: the platform was down. */
export const LATE_NOTE = "⏱ Arriving late: this was ready earlier, but I could not post it until now.";

/** Why a turn failed, in the words the engine recorded for people. */
export function failureReason(turn: Pick<Turn, "errorMessage">): string {
  return turn.errorMessage ?? "something went wrong.";
}

/**
 * At most `max` characters, counted in code points (an emoji is never cut in half), with an ellipsis when cut.
 */
export function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : text;
}

/** Bidirectional controls: embeddings, overrides, isolates and marks (U+202A–E, U+2066–9, U+200E/F, U+061C). */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/;

/**
 * Someone's text, echoed inside our message, kept from reordering the rest of it: text with bidirectional
 * controls (an RTL override can make "approved" of what follows) goes inside a first-strong isolate, whose end
 * closes whatever the text left open. Text without them is returned as it is.
 */
export function isolateBidi(text: string): string {
  return BIDI_CONTROLS.test(text) ? `\u2068${text}\u2069` : text;
}

/** Runs of whitespace (newlines included) as one space: for titles and one-line summaries. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ");
}
