import type { StoredMessage } from "../fakes/discord-state.ts";

/**
 * Whether a bot message shows a result: it carries the result buttons (`tc1:` custom ids). A turn's status also
 * has a button while it is queued or drawing (Cancel, `tcx:`), so "has components" no longer means "done".
 */
export function showsResult(message: Pick<StoredMessage, "components">): boolean {
  return JSON.stringify(message.components).includes('"custom_id":"tc1:');
}
