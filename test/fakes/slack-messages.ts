import type { IncomingMessage, ServerResponse } from "node:http";
import { validateBlocks } from "./slack-blocks.ts";
import { parseMaybeJson } from "./slack-driver.ts";
import {
  appendMessage,
  botMessage,
  type EphemeralRecord,
  findMessage,
  listMessages,
  messageEvent,
  nextTs,
  now,
  type SlackMessage,
  type SlackState,
} from "./slack-state.ts";
import {
  type Args,
  botEvent,
  channelArg,
  contentArgs,
  flag,
  jsonArg,
  required,
  SlackApiError,
  str,
  threadArg,
  type WebApiMethod,
} from "./slack-web-api.ts";

/**
 * Messages: `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `reactions.add|remove`,
 * `conversations.replies`, and what a POST to a response_url does to the conversation.
 */

const RESPONSE_URL_TTL_MS = 30 * 60 * 1000;
const RESPONSE_URL_MAX_USES = 5;

export const MESSAGE_METHODS: Record<string, WebApiMethod> = {
  "chat.postMessage": (state, args) => {
    const channel = channelArg(state, args);
    const threadTs = threadArg(state, channel.id, args);
    const content = contentArgs(args);
    const ts = nextTs(state);
    const broadcast = threadTs !== undefined && flag(args, "reply_broadcast");
    const metadata = jsonArg(args, "metadata", "invalid_metadata_format");
    const message = botMessage(state, {
      ts,
      ...content,
      ...(threadTs ? { thread_ts: threadTs } : {}),
      ...(broadcast ? { subtype: "thread_broadcast" } : {}),
      ...(metadata ? { metadata } : {}),
    });
    appendMessage(state, channel.id, message);
    botEvent(state, channel.id, message);
    return { channel: channel.id, ts, message };
  },

  "chat.update": (state, args) => {
    const channel = channelArg(state, args);
    const ts = required(args, "ts", "message_not_found");
    const message = findMessage(state, channel.id, ts);
    if (!message) throw new SlackApiError("message_not_found");
    if (message.user !== state.botUserId && message.bot_id !== state.botId)
      throw new SlackApiError("cant_update_message");
    const previous = structuredClone(message);
    const content = contentArgs(args);
    // Like attachments, blocks that are not sent are kept (send `blocks=[]` to remove them).
    Object.assign(message, content, { edited: { user: state.botUserId, ts: nextTs(state) } });
    state.updates.push({
      channel: channel.id,
      ts,
      text: content.text,
      blocks: content.blocks,
      via: "chat.update",
    });
    state.onBotEvent?.({
      type: "message",
      subtype: "message_changed",
      hidden: true,
      channel: channel.id,
      ts: nextTs(state),
      event_ts: message.edited?.ts,
      message: messageEvent(state, channel.id, message),
      previous_message: messageEvent(state, channel.id, previous),
      channel_type: channel.type,
    });
    return { channel: channel.id, ts, text: message.text, message };
  },

  "chat.postEphemeral": (state, args) => {
    const channel = channelArg(state, args);
    const user = required(args, "user", "user_not_in_channel");
    if (!state.users.has(user)) throw new SlackApiError("user_not_in_channel");
    const threadTs = threadArg(state, channel.id, args);
    const content = contentArgs(args);
    const record: EphemeralRecord = {
      channel: channel.id,
      user,
      text: content.text,
      ...(content.blocks ? { blocks: content.blocks } : {}),
      ...(threadTs ? { thread_ts: threadTs } : {}),
      via: "chat.postEphemeral",
      message_ts: nextTs(state),
    };
    state.ephemerals.push(record);
    return { message_ts: record.message_ts };
  },

  "reactions.add": (state, args) => {
    const { message, name } = reactionTarget(state, args);
    const reaction = message.reactions?.find((r) => r.name === name);
    if (reaction?.users.includes(state.botUserId)) throw new SlackApiError("already_reacted");
    if (reaction) {
      reaction.users.push(state.botUserId);
      reaction.count += 1;
    } else message.reactions = [...(message.reactions ?? []), { name, users: [state.botUserId], count: 1 }];
    return {};
  },

  "reactions.remove": (state, args) => {
    const { message, name } = reactionTarget(state, args);
    const reaction = message.reactions?.find((r) => r.name === name);
    if (!reaction?.users.includes(state.botUserId)) throw new SlackApiError("no_reaction");
    reaction.users = reaction.users.filter((u) => u !== state.botUserId);
    reaction.count -= 1;
    if (reaction.count === 0) message.reactions = message.reactions?.filter((r) => r !== reaction);
    return {};
  },

  "conversations.history": (state, args) => {
    const channel = channelArg(state, args, "channel", false);
    // Newest first, like Slack; `oldest`/`latest` bound the ts range (exclusive unless `inclusive`).
    const inclusive = flag(args, "inclusive");
    const oldest = Number(str(args, "oldest") ?? 0);
    const latest = Number(str(args, "latest") ?? Number.POSITIVE_INFINITY);
    const inRange = (ts: number) => (inclusive ? ts >= oldest && ts <= latest : ts > oldest && ts < latest);
    const messages = listMessages(state, channel.id)
      .filter((message) => inRange(Number(message.ts)))
      .reverse();
    return page(messages, args, 100);
  },

  "conversations.replies": (state, args) => {
    const channel = channelArg(state, args, "channel", false);
    const ts = required(args, "ts", "thread_not_found");
    const message = findMessage(state, channel.id, ts);
    if (!message) throw new SlackApiError("thread_not_found");
    // A reply's ts gives the same thread as its parent's.
    return page(listMessages(state, channel.id, message.thread_ts ?? message.ts), args, 1000);
  },
};

/** One page of a conversations.* listing: `limit` (1-1000; Slack's default differs by method), an opaque cursor. */
function page(messages: SlackMessage[], args: Args, defaultLimit: number): Record<string, unknown> {
  const limit = Math.min(Math.max(Number(str(args, "limit") ?? defaultLimit) || defaultLimit, 1), 1000);
  const start =
    Number(
      Buffer.from(str(args, "cursor") ?? "", "base64")
        .toString()
        .split(":")[1] ?? 0,
    ) || 0;
  // Message metadata is returned only when asked for.
  const withMetadata = flag(args, "include_all_metadata");
  const shown = messages
    .slice(start, start + limit)
    .map(({ metadata, ...message }) => (withMetadata && metadata ? { ...message, metadata } : message));
  const more = start + limit < messages.length;
  return {
    messages: shown,
    has_more: more,
    response_metadata: {
      next_cursor: more ? Buffer.from(`offset:${start + limit}`).toString("base64") : "",
    },
  };
}

function reactionTarget(state: SlackState, args: Args): { message: SlackMessage; name: string } {
  const channel = channelArg(state, args, "channel", false);
  const name = str(args, "name");
  if (!name || !/^[a-z0-9_+'-]+$/.test(name)) throw new SlackApiError("invalid_name");
  const ts = str(args, "timestamp");
  if (!ts) throw new SlackApiError("bad_timestamp");
  const message = findMessage(state, channel.id, ts);
  if (!message) throw new SlackApiError("message_not_found");
  return { message, name };
}

/**
 * A response_url POST (JSON): valid for 30 minutes and 5 uses. Ephemeral by default; `in_channel` posts a
 * message; with a message behind it (button clicks), `replace_original` edits and `delete_original` deletes it.
 */
export function respond(
  req: IncomingMessage,
  res: ServerResponse,
  state: SlackState,
  path: string,
  raw: Buffer,
) {
  const entry = state.responseUrls.get(path);
  const body = parseMaybeJson(raw.toString("utf8"));
  const answer = (status: number, text: string) => {
    state.responseUrlPosts.push({
      url: entry?.url ?? path,
      use: entry?.uses ?? 0,
      body,
      status,
      answer: text,
    });
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(text);
  };
  if (!entry) return answer(404, "invalid_url");
  entry.uses += 1;
  if (now(state) - entry.createdAt > RESPONSE_URL_TTL_MS) return answer(404, "expired_url");
  if (entry.uses > RESPONSE_URL_MAX_USES) return answer(404, "used_url");
  if (
    !(req.headers["content-type"] ?? "").startsWith("application/json") ||
    typeof body !== "object" ||
    !body
  )
    return answer(400, "invalid_payload");
  const message = body as Record<string, unknown>;
  const isTrue = (value: unknown) => value === true || value === "true";
  const blocks = Array.isArray(message.blocks) ? message.blocks : undefined;
  if (isTrue(message.delete_original) && entry.messageTs) {
    const logged = state.log.find((e) => e.channel === entry.channel && e.message.ts === entry.messageTs);
    if (logged) logged.deleted = true;
    return answer(200, "ok");
  }
  if (typeof message.text !== "string" && !blocks) return answer(400, "no_text");
  if (message.blocks !== undefined && validateBlocks(message.blocks).length > 0)
    return answer(400, "invalid_blocks");
  const content = {
    text: typeof message.text === "string" ? message.text : "",
    ...(blocks ? { blocks } : {}),
  };
  if (isTrue(message.replace_original) && entry.messageTs && entry.ephemeral) {
    // An ephemeral message can be replaced (or deleted) only through the response_url of a click on it.
    const original = state.ephemerals.find((e) => e.message_ts === entry.messageTs && e.user === entry.user);
    if (original) {
      delete original.blocks;
      Object.assign(original, content);
      state.updates.push({
        channel: entry.channel,
        ts: original.message_ts,
        ...content,
        via: "response_url",
      });
      return answer(200, "ok");
    }
  }
  if (isTrue(message.replace_original) && entry.messageTs) {
    const original = findMessage(state, entry.channel, entry.messageTs);
    if (original) {
      Object.assign(original, content, { edited: { user: state.botUserId, ts: nextTs(state) } });
      state.updates.push({ channel: entry.channel, ts: original.ts, ...content, via: "response_url" });
      return answer(200, "ok");
    }
  }
  const threadTs = typeof message.thread_ts === "string" ? message.thread_ts : undefined;
  if (message.response_type === "in_channel") {
    const ts = nextTs(state);
    const posted = botMessage(state, { ts, ...content, ...(threadTs ? { thread_ts: threadTs } : {}) });
    appendMessage(state, entry.channel, posted);
    botEvent(state, entry.channel, posted);
  } else {
    state.ephemerals.push({
      channel: entry.channel,
      user: entry.user,
      ...content,
      ...(threadTs ? { thread_ts: threadTs } : {}),
      via: "response_url",
      message_ts: nextTs(state),
    });
  }
  answer(200, "ok");
}
