import type { StoredMessage } from "../fakes/discord-state.ts";

/**
 * Whether a bot message shows a result: it carries the result buttons (`tc1:` custom ids). A turn's status also
 * has a button while it is queued or drawing (Cancel, `tcx:`), so "has components" no longer means "done".
 */
export function showsResult(message: Pick<StoredMessage, "components">): boolean {
  return JSON.stringify(message.components).includes('"custom_id":"tc1:');
}

/** The custom_id of a button on a message, by its label; throws when the message has no such button. */
export function buttonId(message: Pick<StoredMessage, "id" | "components">, label: string): string {
  const buttons = (
    message.components as Array<{ components: Array<{ label?: string; custom_id?: string }> }>
  ).flatMap((row) => row.components);
  const id = buttons.find((b) => b.label === label)?.custom_id;
  if (!id) throw new Error(`no ${label} button on message ${message.id}`);
  return id;
}
