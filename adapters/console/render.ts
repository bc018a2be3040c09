import type { ImageRecord, Thread, Turn } from "../../src/domain.ts";
import type { ThreadHistory } from "../../src/ports.ts";
import { describeParams } from "../../src/request/flags.ts";

/** Pure text rendering for the console: no I/O, so it is tested without a terminal. */

export function renderThreadList(threads: readonly Thread[], current: string | null): string {
  if (threads.length === 0) return "No threads yet. Start one with /imagine <prompt>.";
  return threads
    .map((thread, i) => {
      const marker = thread.key === current ? "*" : " ";
      const when = thread.updatedAt.toISOString().slice(0, 16).replace("T", " ");
      return `${marker}${String(i + 1).padStart(3)}. ${thread.key}  ${when}  “${thread.title}”`;
    })
    .join("\n");
}

/**
 * The thread as a tree of images: each image under the image it was edited from, with the turn that made it.
 * The head (what the next edit starts from) is marked with ◀.
 */
export function renderHistory(history: ThreadHistory): string {
  const { thread, turns, images } = history;
  const turnById = new Map(turns.map((turn) => [turn.id, turn]));
  const children = new Map<string | null, ImageRecord[]>();
  for (const image of images) {
    const siblings = children.get(image.parentId) ?? [];
    siblings.push(image);
    children.set(image.parentId, siblings);
  }
  const lines = [`Thread ${thread.key} — “${thread.title}”`];
  const walk = (parentId: string | null, depth: number) => {
    for (const image of children.get(parentId) ?? []) {
      const turn = turnById.get(image.turnId);
      const head = image.id === thread.headImageId ? "  ◀ head" : "";
      lines.push(
        `${"  ".repeat(depth)}└ ${shortId(image.id)}  ${describeTurn(turn)}  ${image.width}x${image.height}${head}`,
      );
      walk(image.id, depth + 1);
    }
  };
  walk(null, 0);
  const other = turns.filter(
    (turn) => turn.kind === "undo" || turn.kind === "select" || turn.status !== "succeeded",
  );
  if (other.length > 0) {
    lines.push("Other turns:");
    for (const turn of other)
      lines.push(
        `  #${turn.seq} ${turn.kind} ${turn.status}${turn.errorMessage ? `: ${turn.errorMessage}` : ""}`,
      );
  }
  const cost = turns.reduce((sum, turn) => sum + (turn.costUsd ?? 0), 0);
  lines.push(`${turns.length} turn(s), ${images.length} image(s), ≈ $${cost.toFixed(3)}`);
  return lines.join("\n");
}

/** Enough of a UUID to tell a thread's images apart; `/use` takes any unique prefix. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

function describeTurn(turn: Turn | undefined): string {
  if (!turn) return "";
  const prompt = turn.prompt.length > 60 ? `${turn.prompt.slice(0, 57)}…` : turn.prompt;
  return `#${turn.seq} ${turn.kind} “${prompt}” (${describeParams(turn.params)})`;
}
