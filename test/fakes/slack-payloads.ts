import { randomUUID } from "node:crypto";
import {
  appendMessage,
  createResponseUrl,
  type EphemeralRecord,
  findMessage,
  messageEvent,
  nextTs,
  now,
  type SlackFileObject,
  type SlackMessage,
  type SlackState,
  slackId,
  triggerId,
} from "./slack-state.ts";

/**
 * What people do in the fake workspace, as the payloads Slack would send about it: messages (also added to the
 * log, so the bot can reply in their threads), mentions, edits, deletions, other bots' posts and button clicks.
 * The same payloads go over HTTP (slack-driver.ts) and Socket Mode (slack-socket.ts).
 */

export interface UserMessageInput {
  channel: string;
  text: string;
  user?: string;
  thread_ts?: string;
  files?: SlackFileObject[];
}

function richText(text: string) {
  return [
    {
      type: "rich_text",
      block_id: slackId("", 5),
      elements: [{ type: "rich_text_section", elements: [{ type: "text", text }] }],
    },
  ];
}

/** A person's message: added to the channel's log (so the bot can reply in its thread) and returned as an event. */
export function userMessage(state: SlackState, input: UserMessageInput): Record<string, unknown> {
  const message = logUserMessage(state, input);
  return messageEvent(state, input.channel, message);
}

function logUserMessage(state: SlackState, input: UserMessageInput): SlackMessage {
  if (!state.channels.has(input.channel)) throw new Error(`fake Slack: no channel ${input.channel}`);
  if (input.thread_ts && !findMessage(state, input.channel, input.thread_ts))
    throw new Error(`fake Slack: no message ${input.thread_ts} in ${input.channel} to reply to`);
  const message: SlackMessage = {
    type: "message",
    ts: nextTs(state),
    user: input.user ?? "U0001",
    text: input.text,
    client_msg_id: randomUUID(),
    team: state.teamId,
    blocks: richText(input.text),
    ...(input.thread_ts ? { thread_ts: input.thread_ts } : {}),
    ...(input.files?.length
      ? { subtype: "file_share", files: input.files, upload: false, display_as_bot: false }
      : {}),
  };
  return appendMessage(state, input.channel, message);
}

/** `app_mention`: the text gets a leading `<@BOT>` if it has none. Also logged as the user's message. */
export function appMention(state: SlackState, input: UserMessageInput): Record<string, unknown> {
  const mention = `<@${state.botUserId}>`;
  const text = input.text.includes(mention) ? input.text : `${mention} ${input.text}`;
  const message = logUserMessage(state, { ...input, text });
  const { subtype, upload, display_as_bot, parent_user_id, ...rest } = message;
  return { ...rest, type: "app_mention", channel: input.channel, event_ts: message.ts };
}

/** A message from some other integration (`subtype: "bot_message"`), not this bot. */
export function otherBotMessage(
  state: SlackState,
  input: { channel: string; text: string; thread_ts?: string; bot_id?: string; username?: string },
): Record<string, unknown> {
  const message = appendMessage(state, input.channel, {
    type: "message",
    subtype: "bot_message",
    ts: nextTs(state),
    text: input.text,
    bot_id: input.bot_id ?? "B0OTHERBOT",
    username: input.username ?? "otherbot",
    ...(input.thread_ts ? { thread_ts: input.thread_ts } : {}),
  });
  return messageEvent(state, input.channel, message);
}

/** A person edits their message: the log changes and the `message_changed` event is returned. */
export function messageChanged(state: SlackState, input: { channel: string; ts: string; text: string }) {
  const message = findMessage(state, input.channel, input.ts);
  if (!message) throw new Error(`fake Slack: no message ${input.ts} in ${input.channel}`);
  const previous = messageEvent(state, input.channel, structuredClone(message));
  const editTs = nextTs(state);
  Object.assign(message, {
    text: input.text,
    blocks: richText(input.text),
    edited: { user: message.user ?? "", ts: editTs },
  });
  return {
    type: "message",
    subtype: "message_changed",
    hidden: true,
    channel: input.channel,
    ts: editTs,
    event_ts: editTs,
    message: messageEvent(state, input.channel, message),
    previous_message: previous,
    channel_type: state.channels.get(input.channel)?.type ?? "channel",
  };
}

/** A message is deleted: it leaves the log and the `message_deleted` event is returned. */
export function messageDeleted(state: SlackState, input: { channel: string; ts: string }) {
  const entry = state.log.find((e) => !e.deleted && e.channel === input.channel && e.message.ts === input.ts);
  if (!entry) throw new Error(`fake Slack: no message ${input.ts} in ${input.channel}`);
  entry.deleted = true;
  const ts = nextTs(state);
  return {
    type: "message",
    subtype: "message_deleted",
    hidden: true,
    channel: input.channel,
    ts,
    event_ts: ts,
    deleted_ts: input.ts,
    previous_message: messageEvent(state, input.channel, entry.message),
    channel_type: state.channels.get(input.channel)?.type ?? "channel",
  };
}

// ---------------------------------------------------------------------------------------------------------
// Interactivity
// ---------------------------------------------------------------------------------------------------------

export interface BlockActionInput {
  channel: string;
  /** The message holding the button; it must be in the log. */
  messageTs: string;
  actionId: string;
  /** Defaults to the button's own `value` in the message's blocks. */
  value?: string;
  user?: string;
}

/** A `block_actions` payload for a click on a button of a logged message (the button is looked up in its blocks). */
export function blockActions(state: SlackState, input: BlockActionInput): Record<string, unknown> {
  const message = findMessage(state, input.channel, input.messageTs);
  if (!message) throw new Error(`fake Slack: no message ${input.messageTs} in ${input.channel}`);
  const found = findButton(message.blocks, input.actionId);
  if (!found && input.value === undefined)
    throw new Error(`fake Slack: message ${input.messageTs} has no button ${input.actionId}`);
  const { reactions, ...shown } = message;
  return clickPayload(state, {
    user: input.user ?? "U0001",
    channel: input.channel,
    messageTs: message.ts,
    threadTs: message.thread_ts,
    ephemeral: false,
    action: {
      action_id: input.actionId,
      block_id: found?.blockId ?? slackId("", 5),
      text: found?.text ?? { type: "plain_text", text: input.actionId, emoji: true },
      value: input.value ?? found?.value,
    },
    extra: { message: shown },
  });
}

/**
 * A `block_actions` payload for a click on a button of an ephemeral message (only its user sees it, so only
 * they can click): `container.is_ephemeral`, no `message`, and a response_url that can replace it.
 */
export function ephemeralBlockActions(
  state: SlackState,
  input: { ephemeral: EphemeralRecord; actionId: string },
): Record<string, unknown> {
  const { ephemeral } = input;
  const found = findButton(ephemeral.blocks, input.actionId);
  if (!found) throw new Error(`fake Slack: the ephemeral message has no button ${input.actionId}`);
  return clickPayload(state, {
    user: ephemeral.user,
    channel: ephemeral.channel,
    messageTs: ephemeral.message_ts,
    threadTs: ephemeral.thread_ts,
    ephemeral: true,
    action: { action_id: input.actionId, block_id: found.blockId, text: found.text, value: found.value },
    extra: {},
  });
}

/** What every `block_actions` payload has, around one button click, with a fresh response_url for it. */
function clickPayload(
  state: SlackState,
  click: {
    user: string;
    channel: string;
    messageTs: string;
    threadTs: string | undefined;
    ephemeral: boolean;
    action: { action_id: string; block_id: string; text: unknown; value: string | undefined };
    extra: Record<string, unknown>;
  },
): Record<string, unknown> {
  const { user, channel, messageTs, ephemeral } = click;
  return {
    type: "block_actions",
    user: {
      id: user,
      username: state.users.get(user) ?? "someone",
      name: state.users.get(user) ?? "someone",
      team_id: state.teamId,
    },
    api_app_id: state.appId,
    token: state.verificationToken,
    container: {
      type: "message",
      message_ts: messageTs,
      channel_id: channel,
      is_ephemeral: ephemeral,
      ...(click.threadTs ? { thread_ts: click.threadTs } : {}),
    },
    trigger_id: triggerId(),
    team: { id: state.teamId, domain: state.teamDomain },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: channel, name: state.channels.get(channel)?.name ?? "unknown" },
    ...click.extra,
    state: { values: {} },
    response_url: createResponseUrl(state, { channel, user, messageTs, ...(ephemeral ? { ephemeral } : {}) }),
    actions: [{ type: "button", ...click.action, action_ts: `${(now(state) / 1000).toFixed(6)}` }],
  };
}

function findButton(blocks: unknown[] | undefined, actionId: string) {
  for (const block of blocks ?? []) {
    const b = block as { block_id?: string; elements?: unknown[]; accessory?: unknown };
    for (const element of [...(b.elements ?? []), b.accessory]) {
      const e = element as { action_id?: string; value?: string; text?: unknown } | undefined;
      if (e?.action_id === actionId) return { blockId: b.block_id ?? "", value: e.value, text: e.text };
    }
  }
  return undefined;
}
