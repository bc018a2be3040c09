import type { ImageParams, ImageRecord, Thread, Turn } from "../../src/domain.ts";
import { describeParams } from "../../src/request/flags.ts";
import type { ButtonAction } from "../shared/inbound.ts";
import {
  cancelable,
  failureReason,
  isolateBidi,
  LATE_NOTE,
  type StatusLine,
  statusText,
  truncate,
} from "../shared/render.ts";

/**
 * Pure rendering for Slack: engine state in, message text and Block Kit out. No I/O, so every shape here is
 * tested without a server. Button values carry the ids they need, so buttons keep working after a restart.
 */

export const ACTION_IDS: Record<ButtonAction, string> = {
  undo: "tc_undo",
  variations: "tc_variations",
  regenerate: "tc_regenerate",
  use: "tc_use",
};

/** The action a button's `action_id` names (`tc_use_2` is "use"); null for anything this app did not make. */
export function buttonActionOf(actionId: string): ButtonAction | null {
  for (const [action, id] of Object.entries(ACTION_IDS) as Array<[ButtonAction, string]>) {
    if (actionId === id || (action === "use" && actionId.startsWith(`${id}_`))) return action;
  }
  return null;
}

export interface ButtonValue {
  /** Thread key. */
  t: string;
  /** Image id the action is about. */
  i: string;
}

export function encodeButtonValue(value: ButtonValue): string {
  return JSON.stringify(value);
}

/** Returns null for anything that is not a value this app made (Slack caps values at 2000 characters). */
export function decodeButtonValue(raw: string | undefined): ButtonValue | null {
  try {
    const value = JSON.parse(raw ?? "") as Partial<ButtonValue>;
    return typeof value.t === "string" && typeof value.i === "string" ? { t: value.t, i: value.i } : null;
  } catch {
    return null;
  }
}

/** Slack's mrkdwn treats &, < and > specially; user text must not become links or mentions. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A person's prompt inside our message: escaped, cut to `max`, and unable to reorder what follows it. */
function echo(prompt: string, max: number): string {
  return isolateBidi(truncate(escapeMrkdwn(prompt), max));
}

/** The channel message a /imagine starts: who asked, the prompt, the parameters, and a status kept current. */
export function rootMessage(
  request: { userId: string; prompt: string; params: Partial<ImageParams> },
  status: StatusLine,
  turnId?: string,
) {
  const params = describeParams(request.params);
  const text = `<@${request.userId}> asked for “${echo(request.prompt, 2800)}”`;
  return {
    text: `${text} — ${statusText(status)}`,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text } },
      {
        type: "context",
        elements: [{ type: "mrkdwn", text: [params, statusText(status)].filter(Boolean).join("  ·  ") }],
      },
      ...(turnId ? cancelBlock(turnId, status) : []),
    ],
  };
}

/** A status reply for a turn inside a thread (edits, variations, undo …). */
export function turnStatusMessage(turn: Turn, status: StatusLine) {
  const text = `${describeTurn(turn)} — ${statusText(status)}`;
  // Blocks every time: an update without them would keep the Cancel button of the one before.
  return {
    text,
    blocks: [{ type: "section", text: { type: "mrkdwn", text } }, ...cancelBlock(turn.id, status)],
  };
}

/** The action id of the Cancel button on a turn's status; its value is the turn id. */
export const CANCEL_ACTION = "tcx_cancel";

function cancelBlock(turnId: string, status: StatusLine) {
  return cancelable(status) ? [{ type: "actions", elements: [button("Cancel", CANCEL_ACTION, turnId)] }] : [];
}

export function describeTurn(turn: Turn): string {
  switch (turn.kind) {
    case "generate":
      return `New image: “${echo(turn.prompt, 200)}”`;
    case "edit":
      return `Edit: “${echo(turn.prompt, 200)}”`;
    case "variation":
      return "Variations";
    case "undo":
      return "Undo";
    case "select":
      return "Continue from a chosen image";
  }
}

/** The message under a result: what changed, and the buttons that act on it. */
export function resultMessage(thread: Thread, turn: Turn, images: readonly ImageRecord[]) {
  const head = images[0];
  const buttons: unknown[] = [];
  if (head) {
    const value = encodeButtonValue({ t: thread.key, i: head.id });
    if (head.parentId) buttons.push(button("Undo", ACTION_IDS.undo, value));
    buttons.push(button("Variations", ACTION_IDS.variations, value));
    buttons.push(button("Regenerate", ACTION_IDS.regenerate, value));
  }
  // action_id must be unique within a block, so each choice carries its index; the handler matches the prefix.
  const choices =
    images.length > 1
      ? images.map((image) =>
          button(
            `Use #${image.index + 1}`,
            `${ACTION_IDS.use}_${image.index}`,
            encodeButtonValue({ t: thread.key, i: image.id }),
          ),
        )
      : [];
  const summary =
    images.length > 1
      ? `Version ${turn.seq}: ${images.length} images. Reply in this thread to edit #1, or pick another.`
      : `Version ${turn.seq}. Reply in this thread to edit it.`;
  const cost = turn.costUsd === null ? "" : ` · ≈ $${turn.costUsd.toFixed(3)}`;
  return {
    text: summary,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: `${summary}${cost}` } },
      ...(buttons.length > 0
        ? [{ type: "actions", block_id: `tc_actions_${turn.id}`, elements: buttons }]
        : []),
      ...chunk(choices, 5).map((elements, i) => ({
        type: "actions",
        block_id: `tc_choices_${turn.id}_${i}`,
        elements,
      })),
    ],
  };
}

/**
 * Message metadata on the message that closes a turn (result, failure, head moved). A delivery that runs again
 * after a crash reads the thread back and finds it, so nothing is posted twice.
 */
export const TURN_EVENT_TYPE = "threadcanvas_turn";

export function turnMetadata(turn: Turn) {
  return { event_type: TURN_EVENT_TYPE, event_payload: { turn_id: turn.id } };
}

/** A closing message with the late note on top (text, and a context block when it has blocks). */
export function withLateNote<M extends { text: string; blocks?: unknown[] }>(message: M): M {
  const note = { type: "context", elements: [{ type: "mrkdwn", text: LATE_NOTE }] };
  return {
    ...message,
    text: `${LATE_NOTE}\n${message.text}`,
    ...(message.blocks ? { blocks: [note, ...message.blocks] } : {}),
  };
}

export function headMovedMessage(turn: Turn): string {
  if (turn.kind === "undo") return "↩︎ Undone. The next reply edits the previous version.";
  return "👉 Next replies edit the chosen image.";
}

export function failureMessage(turn: Turn): string {
  return `✖ ${describeTurn(turn)} failed: ${failureReason(turn)}`;
}

/** The action ids of "Draw it" and "Cancel" under "Draw it for about $X?"; their value is `<inbox id>:<user>`. */
export const CONFIRM_ACTION = "tcq_confirm";
export const DECLINE_ACTION = "tcq_decline";

/** "Draw it for about $X?", asked privately, with the answers. */
export function confirmBlocks(question: string, entryId: number, user: string) {
  const value = `${entryId}:${user}`;
  return [
    { type: "section", text: { type: "mrkdwn", text: question } },
    {
      type: "actions",
      elements: [
        { ...button("Draw it", CONFIRM_ACTION, value), style: "primary" },
        button("Cancel", DECLINE_ACTION, value),
      ],
    },
  ];
}

/** The inbox id and the asker in a confirm/decline button's value; null when it is not one of ours. */
export function decodeConfirmValue(raw: string | undefined): { entryId: number; user: string } | null {
  const match = /^(\d+):([A-Z0-9]+)$/.exec(raw ?? "");
  return match ? { entryId: Number(match[1]), user: match[2] ?? "" } : null;
}

function button(text: string, actionId: string, value: string) {
  return { type: "button", text: { type: "plain_text", text }, action_id: actionId, value };
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
