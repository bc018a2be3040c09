import { isEmpty, type MessageContent, readMessageBody } from "./discord-message-body.ts";
import { channelJson, messageJson, snapshot, storeMessage } from "./discord-objects.ts";
import {
  Errors,
  FormErrors,
  type Json,
  objectBody,
  ok,
  type RestRequest,
  type Route,
} from "./discord-rest.ts";
import {
  type ChannelRecord,
  changed,
  channelPermissions,
  type DiscordState,
  iso,
  MessageFlag,
  now,
  Permission,
  type StoredMessage,
  snowflake,
} from "./discord-state.ts";

/**
 * Channels, messages and threads: `GET /channels/{id}`, message create/read/edit/delete and history, typing,
 * reactions, and both ways of starting a thread (THREAD_CREATE tells discord.js, which otherwise drops the
 * thread's messages). The bot's channel permissions are computed from roles and overwrites: 50001 without View
 * Channel, 50013 without the right to send, attach, start threads or reply. Create Message honours `nonce` with
 * `enforce_nonce` as Discord does: a repeat within minutes gets the first message back. Bodies are read by
 * discord-message-body.ts; storing, editing and dispatching here is shared with discord-interactions.ts.
 */

// ---------------------------------------------------------------------------------------------------------
// Channels and permissions
// ---------------------------------------------------------------------------------------------------------

export function channelOr404(state: DiscordState, id: string): ChannelRecord {
  const channel = state.channels.get(id);
  if (!channel) throw Errors.unknownChannel();
  return channel;
}

/** The bot's permissions in a channel; throws 50001 when it cannot even see it. */
export function visibleChannel(state: DiscordState, id: string): { channel: ChannelRecord; perms: bigint } {
  const channel = channelOr404(state, id);
  const perms = channelPermissions(state, state.bot.id, id);
  if (!(perms & Permission.ViewChannel)) throw Errors.missingAccess();
  return { channel, perms };
}

function requirePermission(perms: bigint, needed: bigint): void {
  if ((perms & needed) !== needed) throw Errors.missingPermissions();
}

/** Sends or edits by the bot in a channel: right to send (in threads, to send in threads); an archived thread reopens. */
function requireSend(
  state: DiscordState,
  channelId: string,
  options: { files: boolean; reply: boolean },
): ChannelRecord {
  const { channel, perms } = visibleChannel(state, channelId);
  requirePermission(perms, channel.parentId ? Permission.SendMessagesInThreads : Permission.SendMessages);
  if (options.files) requirePermission(perms, Permission.AttachFiles);
  if (options.reply) requirePermission(perms, Permission.ReadMessageHistory);
  if (channel.locked && !(perms & Permission.ManageThreads)) throw Errors.threadLocked();
  if (channel.archived) unarchive(state, channel);
  return channel;
}

function unarchive(state: DiscordState, thread: ChannelRecord): void {
  thread.archived = false;
  state.dispatch("THREAD_UPDATE", channelJson(state, thread));
}

export function messageOr404(state: DiscordState, channelId: string, messageId: string): StoredMessage {
  const message = state.messages.get(messageId);
  // Ephemeral messages exist only for the interaction's webhook, never in the channel.
  if (!message || message.deleted || message.channelId !== channelId || message.flags & MessageFlag.Ephemeral)
    throw Errors.unknownMessage();
  return message;
}

// ---------------------------------------------------------------------------------------------------------
// Storing and dispatching messages
// ---------------------------------------------------------------------------------------------------------

/** MESSAGE_CREATE / MESSAGE_UPDATE for a stored message (never for ephemeral ones, which only their user sees). */
export function dispatchMessage(
  state: DiscordState,
  message: StoredMessage,
  event: "MESSAGE_CREATE" | "MESSAGE_UPDATE",
) {
  if (message.flags & MessageFlag.Ephemeral) return;
  // The nonce comes back in the create's answer and its MESSAGE_CREATE only.
  state.dispatch(event, messageJson(state, message, { gateway: true, nonce: event === "MESSAGE_CREATE" }));
}

/** Applies an edit: keeps the snapshot, marks it edited, and tells the gateway. */
export function editMessage(
  state: DiscordState,
  message: StoredMessage,
  next: MessageContent,
  via: string,
): void {
  const wasLoading = (message.flags & MessageFlag.Loading) !== 0;
  Object.assign(message, next);
  // The first edit of a deferred response is its real content: it is no longer "thinking".
  message.flags &= ~MessageFlag.Loading;
  if (!wasLoading) message.editedTimestamp = iso(now(state));
  message.history.push(snapshot(message, now(state), via));
  dispatchMessage(state, message, "MESSAGE_UPDATE");
  changed(state);
}

function readReference(
  state: DiscordState,
  body: Json,
  channelId: string,
): StoredMessage["messageReference"] {
  const reference = body.message_reference as Json | undefined | null;
  if (!reference) return undefined;
  const errors = new FormErrors();
  const id = typeof reference.message_id === "string" ? reference.message_id : undefined;
  const target = id ? state.messages.get(id) : undefined;
  const sameChannel =
    target && !target.deleted && target.channelId === ((reference.channel_id as string) ?? channelId);
  if (!id || !sameChannel || !target) {
    if (reference.fail_if_not_exists === false) return undefined;
    errors.add(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message");
    errors.throwIfAny();
    return undefined;
  }
  return { type: 0, message_id: target.id, channel_id: target.channelId, guild_id: state.guildId };
}

// ---------------------------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------------------------

/** How far back `enforce_nonce` looks: Discord says "the past few minutes"; the fake takes 5, on its own clock. */
export const NONCE_WINDOW_MS = 5 * 60 * 1000;
const MAX_NONCE_LENGTH = 25;

/**
 * Create Message's `nonce` (a string of at most 25 characters, or an integer) and `enforce_nonce` (a boolean);
 * anything else is a 50035 Invalid Form Body.
 */
function readNonce(body: Json): { value?: string | number; enforce: boolean } {
  const errors = new FormErrors();
  const { nonce, enforce_nonce: enforce } = body;
  const given = nonce !== undefined && nonce !== null;
  if (given && typeof nonce === "string" && [...nonce].length > MAX_NONCE_LENGTH)
    errors.add(["nonce"], "BASE_TYPE_MAX_LENGTH", `Must be ${MAX_NONCE_LENGTH} or fewer in length.`);
  else if (given && typeof nonce !== "string" && !isInt64(nonce))
    errors.add(["nonce"], "NONCE_TYPE_INVALID", "Nonce must be a string or an integer.");
  if (enforce !== undefined && enforce !== null && typeof enforce !== "boolean")
    errors.add(["enforce_nonce"], "BASE_TYPE_BOOLEAN", "Must be either true or false.");
  errors.throwIfAny();
  return { ...(given ? { value: nonce as string | number } : {}), enforce: enforce === true };
}

const isInt64 = (value: unknown) =>
  typeof value === "number" && Number.isInteger(value) && Math.abs(value) < 2 ** 63;

/**
 * The bot's message in this channel created with the same nonce within the window, if any (deleted ones do not
 * count). A nonce is compared as text: `123` and `"123"` are the same nonce.
 */
function recentMessageWithNonce(
  state: DiscordState,
  channelId: string,
  nonce: string | number | undefined,
): StoredMessage | undefined {
  if (nonce === undefined) return undefined;
  const since = now(state) - NONCE_WINDOW_MS;
  for (const message of state.messages.values()) {
    if (message.deleted || message.channelId !== channelId || message.author.id !== state.bot.id) continue;
    if (message.nonce === undefined || String(message.nonce) !== String(nonce)) continue;
    if ((message.history[0]?.at ?? 0) >= since) return message;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------------------

const ARCHIVE_DURATIONS = [60, 1440, 4320, 10080];

function readThreadBody(body: Json, needType: boolean): { name: string; type: 11 | 12; autoArchive: number } {
  const errors = new FormErrors();
  const name = body.name;
  if (typeof name !== "string") errors.add(["name"], "BASE_TYPE_REQUIRED", "This field is required");
  else if ([...name].length < 1 || [...name].length > 100)
    errors.add(["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
  const auto = body.auto_archive_duration;
  if (auto !== undefined && auto !== null && !ARCHIVE_DURATIONS.includes(auto as number))
    errors.add(
      ["auto_archive_duration"],
      "BASE_TYPE_CHOICES",
      "Value must be one of {60, 1440, 4320, 10080}.",
    );
  // API v10 made `type` required for threads without a message (it defaulted to private threads in v9).
  const type = body.type ?? (needType ? undefined : 11);
  if (type === undefined) errors.add(["type"], "BASE_TYPE_REQUIRED", "This field is required");
  else if (type !== 11 && type !== 12 && (needType || type !== 10))
    errors.add(["type"], "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.");
  errors.throwIfAny();
  return {
    name: name as string,
    type: needType ? (type as 11 | 12) : 11,
    autoArchive: (auto as number) ?? 4320,
  };
}

/** Creates a thread and announces it with THREAD_CREATE, so discord.js caches it (or it drops the thread's messages). */
export function createThread(
  state: DiscordState,
  input: {
    parent: ChannelRecord;
    name: string;
    type: 11 | 12;
    autoArchive: number;
    ownerId: string;
    id?: string;
    announce?: boolean;
  },
): ChannelRecord {
  const thread: ChannelRecord = {
    id: input.id ?? snowflake(state),
    type: input.type,
    name: input.name,
    position: 0,
    overwrites: [],
    lastMessageId: null,
    parentId: input.parent.id,
    ownerId: input.ownerId,
    archived: false,
    locked: false,
    autoArchiveDuration: input.autoArchive,
    createdAt: iso(now(state)),
    messageCount: 0,
    totalMessageSent: 0,
    memberIds: [input.ownerId],
  };
  state.channels.set(thread.id, thread);
  if (input.announce !== false && channelPermissions(state, state.bot.id, thread.id) & Permission.ViewChannel)
    state.dispatch("THREAD_CREATE", { ...channelJson(state, thread), newly_created: true });
  changed(state);
  return thread;
}

function threadMember(state: DiscordState, thread: ChannelRecord): Json {
  return { id: thread.id, user_id: state.bot.id, join_timestamp: thread.createdAt, flags: 1 };
}

// ---------------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------------

function readLimit(req: RestRequest): number {
  const raw = req.query.get("limit");
  if (raw === null) return 50;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    const errors = new FormErrors();
    errors.add(["limit"], "NUMBER_TYPE_MAX", "int value should be between 1 and 100.");
    errors.throwIfAny();
  }
  return limit;
}

function emojiParam(value: string): string {
  const custom = /^(?:a:)?\w+:\d{17,20}$/.test(value);
  // A unicode emoji has no ASCII letters or digits; anything else must be name:id.
  if (!custom && (value.length === 0 || /[\w:]/.test(value))) throw Errors.unknownEmoji();
  return value;
}

export const MESSAGE_ROUTES: Route[] = [
  {
    method: "GET",
    pattern: "/channels/{channel}",
    auth: true,
    handler: (state, _req, p) => ok(channelJson(state, visibleChannel(state, p.channel ?? "").channel)),
  },
  {
    method: "GET",
    pattern: "/channels/{channel}/messages",
    auth: true,
    handler: (state, req, p) => {
      const { perms } = visibleChannel(state, p.channel ?? "");
      const limit = readLimit(req);
      // Without Read Message History the list is empty (documented), not an error.
      if (!(perms & Permission.ReadMessageHistory)) return ok([]);
      let list = [...state.messages.values()]
        .filter((m) => m.channelId === p.channel && !m.deleted && !(m.flags & MessageFlag.Ephemeral))
        .sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
      const before = req.query.get("before");
      const after = req.query.get("after");
      if (before) list = list.filter((m) => BigInt(m.id) < BigInt(before));
      if (after)
        list = list
          .filter((m) => BigInt(m.id) > BigInt(after))
          .reverse()
          .slice(0, limit)
          .reverse();
      return ok(list.slice(0, limit).map((m) => messageJson(state, m)));
    },
  },
  {
    method: "POST",
    pattern: "/channels/{channel}/messages",
    auth: true,
    handler: (state, req, p) => {
      const body = objectBody(req);
      const channelId = p.channel ?? "";
      const channel = requireSend(state, channelId, {
        files: req.files.length > 0,
        reply: !!body.message_reference,
      });
      const reference = readReference(state, body, channelId);
      const nonce = readNonce(body);
      // With enforce_nonce, a repeat of a recent create gets the first message back and creates nothing.
      const earlier = nonce.enforce ? recentMessageWithNonce(state, channelId, nonce.value) : undefined;
      if (earlier) return ok(messageJson(state, earlier, { nonce: true }));
      const content = readMessageBody(state, req, body, { channelId, allowEphemeral: false });
      if (isEmpty(content)) throw Errors.emptyMessage();
      if (channel.parentId && !channel.memberIds?.includes(state.bot.id))
        channel.memberIds?.push(state.bot.id);
      const message = storeMessage(
        state,
        {
          channelId,
          type: reference ? 19 : 0,
          author: state.bot,
          ...content,
          ...(reference ? { messageReference: reference } : {}),
          ...(nonce.value !== undefined ? { nonce: nonce.value } : {}),
        },
        `POST /channels/${channelId}/messages`,
      );
      dispatchMessage(state, message, "MESSAGE_CREATE");
      return ok(messageJson(state, message, { nonce: true }));
    },
  },
  {
    method: "GET",
    pattern: "/channels/{channel}/messages/{message}",
    auth: true,
    handler: (state, _req, p) => {
      const { perms } = visibleChannel(state, p.channel ?? "");
      if (!(perms & Permission.ReadMessageHistory)) throw Errors.missingAccess();
      return ok(messageJson(state, messageOr404(state, p.channel ?? "", p.message ?? "")));
    },
  },
  {
    method: "PATCH",
    pattern: "/channels/{channel}/messages/{message}",
    auth: true,
    handler: (state, req, p) => {
      const channelId = p.channel ?? "";
      visibleChannel(state, channelId);
      const message = messageOr404(state, channelId, p.message ?? "");
      if (message.author.id !== state.bot.id) throw Errors.cannotEditOthers();
      const body = objectBody(req);
      const next = readMessageBody(state, req, body, { channelId, existing: message, allowEphemeral: false });
      if (isEmpty(next)) throw Errors.emptyMessage();
      editMessage(state, message, next, `PATCH /channels/${channelId}/messages/${message.id}`);
      return ok(messageJson(state, message));
    },
  },
  {
    method: "DELETE",
    pattern: "/channels/{channel}/messages/{message}",
    auth: true,
    handler: (state, _req, p) => {
      const channelId = p.channel ?? "";
      const { perms } = visibleChannel(state, channelId);
      const message = messageOr404(state, channelId, p.message ?? "");
      if (message.author.id !== state.bot.id) requirePermission(perms, Permission.ManageMessages);
      message.deleted = true;
      state.dispatch("MESSAGE_DELETE", { id: message.id, channel_id: channelId, guild_id: state.guildId });
      changed(state);
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "/channels/{channel}/typing",
    auth: true,
    handler: (state, _req, p) => {
      const { channel, perms } = visibleChannel(state, p.channel ?? "");
      requirePermission(perms, channel.parentId ? Permission.SendMessagesInThreads : Permission.SendMessages);
      return ok();
    },
  },
  {
    method: "PUT",
    pattern: "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
    auth: true,
    handler: (state, _req, p) => {
      const { perms } = visibleChannel(state, p.channel ?? "");
      requirePermission(perms, Permission.ReadMessageHistory);
      const message = messageOr404(state, p.channel ?? "", p.message ?? "");
      const emoji = emojiParam(p.emoji ?? "");
      // Adding to an existing reaction only needs history; starting a new one needs Add Reactions.
      if (!message.reactions.has(emoji)) requirePermission(perms, Permission.AddReactions);
      const users = message.reactions.get(emoji) ?? new Set<string>();
      users.add(state.bot.id);
      message.reactions.set(emoji, users);
      changed(state);
      return ok();
    },
  },
  {
    method: "DELETE",
    pattern: "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
    auth: true,
    handler: (state, _req, p) => {
      visibleChannel(state, p.channel ?? "");
      const message = messageOr404(state, p.channel ?? "", p.message ?? "");
      const emoji = emojiParam(p.emoji ?? "");
      message.reactions.get(emoji)?.delete(state.bot.id);
      if (message.reactions.get(emoji)?.size === 0) message.reactions.delete(emoji);
      changed(state);
      return ok();
    },
  },
  {
    method: "POST",
    pattern: "/channels/{channel}/messages/{message}/threads",
    auth: true,
    handler: (state, req, p) => {
      const { channel, perms } = visibleChannel(state, p.channel ?? "");
      if (channel.type !== 0) throw Errors.wrongChannelType();
      requirePermission(perms, Permission.CreatePublicThreads | Permission.ReadMessageHistory);
      const starter = messageOr404(state, channel.id, p.message ?? "");
      const { name, autoArchive } = readThreadBody(objectBody(req), false);
      if (starter.threadId) throw Errors.threadAlreadyCreated();
      // A thread started from a message has the message's id.
      const thread = createThread(state, {
        parent: channel,
        name,
        type: 11,
        autoArchive,
        ownerId: state.bot.id,
        id: starter.id,
      });
      starter.threadId = thread.id;
      starter.flags |= MessageFlag.HasThread;
      dispatchMessage(state, starter, "MESSAGE_UPDATE");
      return { status: 201, body: { ...channelJson(state, thread), member: threadMember(state, thread) } };
    },
  },
  {
    method: "POST",
    pattern: "/channels/{channel}/threads",
    auth: true,
    handler: (state, req, p) => {
      const { channel, perms } = visibleChannel(state, p.channel ?? "");
      if (channel.type !== 0) throw Errors.wrongChannelType();
      const { name, type, autoArchive } = readThreadBody(objectBody(req), true);
      requirePermission(
        perms,
        type === 11 ? Permission.CreatePublicThreads : Permission.CreatePrivateThreads,
      );
      const thread = createThread(state, { parent: channel, name, type, autoArchive, ownerId: state.bot.id });
      return { status: 201, body: { ...channelJson(state, thread), member: threadMember(state, thread) } };
    },
  },
];
