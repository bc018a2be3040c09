import { createThread, dispatchMessage } from "./discord-messages.ts";
import {
  attachmentJson,
  channelJson,
  hostAttachment,
  memberJson,
  messageJson,
  roleJson,
  storeMessage,
  userJson,
} from "./discord-objects.ts";
import {
  type CallbackRecord,
  type ChannelRecord,
  type CommandRecord,
  changed,
  channelPermissions,
  type DiscordState,
  type DiscordUser,
  type InteractionRecord,
  MessageFlag,
  type MessageSnapshot,
  now,
  Permission,
  randomToken,
  type StoredMessage,
  snowflake,
  waitFor,
} from "./discord-state.ts";

/**
 * Discord's side of the conversation: what people do, turned into the gateway dispatches Discord sends. A slash
 * command is checked against the registered command (Discord's client lets people send only what the command
 * declares), its attachment options are hosted like the CDN hosts them, and INTERACTION_CREATE carries every
 * field discord.js needs (protocols.md A4). Each interaction gets a handle to await and inspect its responses.
 * Mistakes in a test (unknown command, option, message or button) throw here, since Discord would not let a
 * person send them at all.
 */

export interface AttachmentInput {
  bytes: Buffer;
  filename: string;
  contentType?: string;
  description?: string;
}

export type OptionValue = string | number | boolean | AttachmentInput;

/** A user by username (`"alice"`), id, or user object. */
export type UserRef = string | { id: string };

export interface SlashCommandInput {
  name: string;
  user?: UserRef;
  /** Default: the guild's text channel. Threads work too. */
  channel?: string;
  /** By option name; or Discord's own `[{ name, value }]` list. */
  options?: Record<string, OptionValue> | Array<{ name: string; value: OptionValue }>;
  /** Attachment options by name (merged into `options`). */
  attachments?: Record<string, AttachmentInput>;
  subcommand?: string;
  group?: string;
  locale?: string;
}

export interface ComponentInput {
  messageId: string;
  customId: string;
  user?: UserRef;
  /** For select menus: the chosen values. */
  values?: string[];
  locale?: string;
}

export interface UserMessageInput {
  content: string;
  user?: UserRef;
  channel?: string;
  attachments?: AttachmentInput[];
  /** The id of the message this one replies to (a type 19 reply with `message_reference`). */
  messageReference?: string;
}

export interface UserThreadInput {
  name: string;
  user?: UserRef;
  channel?: string;
  /** Start the thread from this message (the thread then has the message's id). */
  fromMessageId?: string;
  /** false: create it without THREAD_CREATE, so discord.js does not cache it (and drops its messages). */
  announce?: boolean;
}

export function resolveUser(state: DiscordState, ref: UserRef | undefined): DiscordUser {
  const key = ref === undefined ? "alice" : typeof ref === "string" ? ref : ref.id;
  const user = state.users.get(key) ?? [...state.users.values()].find((u) => u.username === key);
  if (!user) throw new Error(`fake Discord: no user ${key}`);
  return user;
}

function resolveChannel(state: DiscordState, id: string | undefined, fallback: string): ChannelRecord {
  const channel = state.channels.get(id ?? fallback);
  if (!channel) throw new Error(`fake Discord: no channel ${id}`);
  return channel;
}

// ---------------------------------------------------------------------------------------------------------
// Interactions
// ---------------------------------------------------------------------------------------------------------

/** A dispatched interaction and everything the bot did with it, read live from the fake's state. */
export class InteractionHandle {
  readonly #state: DiscordState;
  readonly record: InteractionRecord;

  constructor(state: DiscordState, record: InteractionRecord) {
    this.#state = state;
    this.record = record;
  }

  get id(): string {
    return this.record.id;
  }
  get token(): string {
    return this.record.token;
  }
  /** The INTERACTION_CREATE `d` the bot received. */
  get payload(): Record<string, unknown> {
    return this.record.payload;
  }
  /** The accepted initial response (type, latency, data), or null. */
  get ack(): CallbackRecord | null {
    return this.record.ack;
  }
  /** Responses Discord refused, with their error codes (10062 late, 40060 twice, 50035 malformed…). */
  get rejected(): InteractionRecord["rejected"] {
    return this.record.rejected;
  }
  /** The `@original` message: the response (types 4, 5), or the clicked message (types 6, 7). */
  get original(): StoredMessage | undefined {
    const id = this.record.originalMessageId;
    return id ? this.#state.messages.get(id) : undefined;
  }
  /** Every version of the original message, first to last, each with its attachments' bytes. */
  get edits(): MessageSnapshot[] {
    return this.original?.history ?? [];
  }
  get followUps(): StoredMessage[] {
    return this.record.followUpIds.flatMap((id) => this.#state.messages.get(id) ?? []);
  }

  waitForAck(timeoutMs = 5000): Promise<CallbackRecord> {
    return waitFor(this.#state, () => this.record.ack, timeoutMs, `the ack of interaction ${this.id}`);
  }
  /** Waits until the original message has `count` versions (the response itself is the first). */
  waitForEdits(count: number, timeoutMs = 5000): Promise<MessageSnapshot[]> {
    return waitFor(
      this.#state,
      () => (this.edits.length >= count ? this.edits : null),
      timeoutMs,
      `${count} versions of the original response of ${this.id}`,
    );
  }
  /** Waits until the original message satisfies the predicate (e.g. has an attachment). */
  waitForOriginal(predicate: (message: StoredMessage) => boolean, timeoutMs = 5000): Promise<StoredMessage> {
    return waitFor(
      this.#state,
      () => {
        const message = this.original;
        return message && predicate(message) ? message : null;
      },
      timeoutMs,
      `the original response of ${this.id}`,
    );
  }
  waitForFollowUps(count: number, timeoutMs = 5000): Promise<StoredMessage[]> {
    return waitFor(
      this.#state,
      () => (this.followUps.length >= count ? this.followUps : null),
      timeoutMs,
      `${count} follow-ups of ${this.id}`,
    );
  }
}

/** The fields every INTERACTION_CREATE carries (protocols.md A4: entitlements and owners are required). */
function interactionBase(
  state: DiscordState,
  user: DiscordUser,
  channel: ChannelRecord,
  locale: string,
): Record<string, unknown> {
  const id = snowflake(state);
  const userPermissions = String(channelPermissions(state, user.id, channel.id));
  return {
    id,
    application_id: state.applicationId,
    token: randomToken(`interaction:${id}`),
    version: 1,
    guild_id: state.guildId,
    guild: { id: state.guildId, locale: "en-US", features: [] },
    channel_id: channel.id,
    channel: { ...channelJson(state, channel), permissions: userPermissions },
    member: { ...memberJson(state, user.id, true), permissions: userPermissions },
    app_permissions: String(channelPermissions(state, state.bot.id, channel.id)),
    locale,
    guild_locale: "en-US",
    entitlements: [],
    authorizing_integration_owners: { "0": state.guildId },
    context: 0,
    attachment_size_limit: state.attachmentSizeLimit,
  };
}

function dispatchInteraction(
  state: DiscordState,
  payload: Record<string, unknown>,
  fields: Pick<InteractionRecord, "type" | "channelId" | "userId"> &
    Partial<Pick<InteractionRecord, "commandName" | "customId" | "sourceMessageId">>,
): InteractionHandle {
  const record: InteractionRecord = {
    id: payload.id as string,
    token: payload.token as string,
    ...fields,
    dispatchedAt: now(state),
    payload,
    ack: null,
    rejected: [],
    originalMessageId: null,
    followUpIds: [],
  };
  state.interactions.set(record.id, record);
  state.interactionsByToken.set(record.token, record);
  state.dispatch("INTERACTION_CREATE", payload);
  changed(state);
  return new InteractionHandle(state, record);
}

function findCommand(state: DiscordState, name: string): CommandRecord {
  const isSlash = (c: CommandRecord) => c.type === 1 && c.name === name;
  const command = state.commands.get(state.guildId)?.find(isSlash) ?? state.commands.get("")?.find(isSlash);
  if (!command) throw new Error(`fake Discord: no slash command /${name} is registered`);
  return command;
}

interface SchemaOption {
  type: number;
  name: string;
  required?: boolean;
  choices?: Array<{ name: string; value: string | number }>;
  min_value?: number;
  max_value?: number;
  min_length?: number;
  max_length?: number;
  options?: SchemaOption[];
}

function isAttachmentInput(value: unknown): value is AttachmentInput {
  return typeof value === "object" && value !== null && Buffer.isBuffer((value as AttachmentInput).bytes);
}

/** Builds `data.options` and `data.resolved` from the test's values, checked against the command's schema. */
function commandOptions(state: DiscordState, command: CommandRecord, input: SlashCommandInput) {
  const resolved: Record<string, Record<string, unknown>> = {};
  const given = new Map<string, OptionValue>(
    Array.isArray(input.options)
      ? input.options.map((o) => [o.name, o.value])
      : Object.entries(input.options ?? {}),
  );
  for (const [name, value] of Object.entries(input.attachments ?? {})) given.set(name, value);

  let schema = (command.options ?? []) as SchemaOption[];
  const wrap: Array<{ type: number; name: string }> = [];
  for (const [kind, name] of [
    [2, input.group],
    [1, input.subcommand],
  ] as const) {
    if (!name) continue;
    const nested = schema.find((o) => o.type === kind && o.name === name);
    if (!nested)
      throw new Error(`fake Discord: /${command.name} has no ${kind === 2 ? "group" : "subcommand"} ${name}`);
    wrap.push({ type: kind, name });
    schema = nested.options ?? [];
  }
  if (schema.some((o) => o.type === 1 || o.type === 2))
    throw new Error(`fake Discord: /${command.name} needs a subcommand`);

  const add = (kind: string, id: string, value: Record<string, unknown>) => {
    resolved[kind] ??= {};
    resolved[kind][id] = value;
  };
  const options = [...given].map(([name, value]) => {
    const option = schema.find((o) => o.name === name);
    if (!option) throw new Error(`fake Discord: /${command.name} has no option ${name}`);
    const fail = (why: string): never => {
      throw new Error(`fake Discord: option ${name} of /${command.name}: ${why}`);
    };
    switch (option.type) {
      case 3:
        if (typeof value !== "string") fail("must be a string");
        if (
          (value as string).length < (option.min_length ?? 0) ||
          (value as string).length > (option.max_length ?? 6000)
        )
          fail("length out of range");
        break;
      case 4:
      case 10:
        if (typeof value !== "number" || (option.type === 4 && !Number.isSafeInteger(value)))
          fail("must be a number");
        if (
          (value as number) < (option.min_value ?? -(2 ** 53)) ||
          (value as number) > (option.max_value ?? 2 ** 53)
        )
          fail("out of range");
        break;
      case 5:
        if (typeof value !== "boolean") fail("must be a boolean");
        break;
      case 6: {
        const user = resolveUser(state, String(value));
        add("users", user.id, userJson(user));
        add("members", user.id, {
          ...memberJson(state, user.id, false),
          permissions: String(channelPermissions(state, user.id, input.channel ?? "")),
        });
        return { name, type: 6, value: user.id };
      }
      case 7: {
        const channel = resolveChannel(state, String(value), "");
        add("channels", channel.id, { ...channelJson(state, channel), permissions: "0" });
        return { name, type: 7, value: channel.id };
      }
      case 8: {
        const role = state.roles.find((r) => r.id === value) ?? fail("no such role");
        add("roles", role.id, roleJson(role));
        return { name, type: 8, value: role.id };
      }
      case 11: {
        if (!isAttachmentInput(value)) return fail("must be { bytes, filename }");
        const attachment = hostAttachment(
          state,
          { ...value, ephemeral: true },
          { ephemeralFor: state.applicationId },
        );
        add("attachments", attachment.id, attachmentJson(attachment));
        return { name, type: 11, value: attachment.id };
      }
      default:
        fail(`type ${option.type} is not supported by the fake's driver`);
    }
    if (option.choices && !option.choices.some((c) => c.value === value)) fail("not one of the choices");
    return { name, type: option.type, value };
  });
  for (const option of schema)
    if (option.required && !given.has(option.name))
      throw new Error(`fake Discord: /${command.name} needs option ${option.name}`);

  let nested: Array<Record<string, unknown>> = options;
  for (const level of wrap.reverse()) nested = [{ ...level, options: nested }];
  return { options: nested, resolved };
}

export function slashCommand(state: DiscordState, input: SlashCommandInput): InteractionHandle {
  const user = resolveUser(state, input.user);
  const channel = resolveChannel(state, input.channel, defaultChannel(state));
  const command = findCommand(state, input.name);
  const { options, resolved } = commandOptions(state, command, { ...input, channel: channel.id });
  const payload = {
    ...interactionBase(state, user, channel, input.locale ?? "en-US"),
    type: 2,
    data: {
      id: command.id,
      name: command.name,
      type: 1,
      ...(command.guild_id ? { guild_id: command.guild_id } : {}),
      ...(options.length > 0 ? { options } : {}),
      ...(Object.keys(resolved).length > 0 ? { resolved } : {}),
    },
  };
  return dispatchInteraction(state, payload, {
    type: 2,
    channelId: channel.id,
    userId: user.id,
    commandName: command.name,
  });
}

function findComponent(components: unknown, customId: string): Record<string, unknown> | undefined {
  if (!Array.isArray(components)) return undefined;
  for (const raw of components) {
    const component = (raw ?? {}) as Record<string, unknown>;
    if (component.custom_id === customId) return component;
    const inner =
      findComponent(component.components, customId) ??
      (component.accessory ? findComponent([component.accessory], customId) : undefined);
    if (inner) return inner;
  }
  return undefined;
}

/** A click on a button (or a choice in a select menu) of one of the bot's messages. */
export function clickComponent(state: DiscordState, input: ComponentInput): InteractionHandle {
  const user = resolveUser(state, input.user);
  const message = state.messages.get(input.messageId);
  if (!message || message.deleted) throw new Error(`fake Discord: no message ${input.messageId}`);
  if (message.author.id !== state.bot.id)
    throw new Error("fake Discord: only the bot's messages have clickable components");
  const owner = (message.interactionMetadata?.user as { id?: string } | undefined)?.id;
  if (message.flags & MessageFlag.Ephemeral && owner !== user.id)
    throw new Error(`fake Discord: ${user.username} cannot see the ephemeral message ${message.id}`);
  const component = findComponent(message.components, input.customId);
  if (!component) throw new Error(`fake Discord: message ${message.id} has no component ${input.customId}`);
  if (component.disabled === true) throw new Error(`fake Discord: component ${input.customId} is disabled`);
  const type = component.type as number;
  if (type === 2 && component.style === 5)
    throw new Error("fake Discord: link buttons open a URL, not an interaction");
  if (type !== 2 && !input.values) throw new Error(`fake Discord: select ${input.customId} needs values`);
  const channel = resolveChannel(state, message.channelId, message.channelId);
  const payload = {
    ...interactionBase(state, user, channel, input.locale ?? "en-US"),
    type: 3,
    message: messageJson(state, message),
    data: {
      custom_id: input.customId,
      component_type: type,
      ...(type === 2 ? {} : { values: input.values }),
    },
  };
  return dispatchInteraction(state, payload, {
    type: 3,
    channelId: channel.id,
    userId: user.id,
    customId: input.customId,
    sourceMessageId: message.id,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Messages and threads from people
// ---------------------------------------------------------------------------------------------------------

export function defaultChannel(state: DiscordState): string {
  return [...state.channels.values()].find((c) => c.type === 0)?.id ?? "";
}

/** A person posts (in a channel or thread): stored, then MESSAGE_CREATE (content subject to the intents). */
export function userMessage(state: DiscordState, input: UserMessageInput): StoredMessage {
  const user = resolveUser(state, input.user);
  const channel = resolveChannel(state, input.channel, defaultChannel(state));
  const perms = channelPermissions(state, user.id, channel.id);
  const send = channel.parentId ? Permission.SendMessagesInThreads : Permission.SendMessages;
  if (!(perms & send)) throw new Error(`fake Discord: ${user.username} cannot post in ${channel.name}`);
  let reference: StoredMessage["messageReference"];
  if (input.messageReference) {
    const target = state.messages.get(input.messageReference);
    if (!target || target.deleted || target.channelId !== channel.id)
      throw new Error(`fake Discord: no message ${input.messageReference} in ${channel.name} to reply to`);
    reference = { type: 0, message_id: target.id, channel_id: channel.id, guild_id: state.guildId };
  }
  if (channel.archived) channel.archived = false;
  if (channel.parentId && !channel.memberIds?.includes(user.id)) channel.memberIds?.push(user.id);
  const attachments = (input.attachments ?? []).map((a) =>
    hostAttachment(state, a, { channelId: channel.id }),
  );
  const message = storeMessage(
    state,
    {
      channelId: channel.id,
      type: reference ? 19 : 0,
      author: user,
      content: input.content,
      flags: 0,
      embeds: [],
      components: [],
      attachments,
      ...(reference ? { messageReference: reference } : {}),
    },
    "driver",
  );
  dispatchMessage(state, message, "MESSAGE_CREATE");
  return message;
}

/** A person starts a thread (from a message or not); THREAD_CREATE tells the bot unless `announce: false`. */
export function userThread(state: DiscordState, input: UserThreadInput): ChannelRecord {
  const user = resolveUser(state, input.user);
  const parent = resolveChannel(state, input.channel, defaultChannel(state));
  if (parent.type !== 0) throw new Error("fake Discord: threads start in text channels");
  const starter = input.fromMessageId ? state.messages.get(input.fromMessageId) : undefined;
  if (input.fromMessageId && (!starter || starter.channelId !== parent.id || starter.threadId))
    throw new Error(`fake Discord: cannot start a thread from message ${input.fromMessageId}`);
  const thread = createThread(state, {
    parent,
    name: input.name,
    type: 11,
    autoArchive: 4320,
    ownerId: user.id,
    ...(starter ? { id: starter.id } : {}),
    ...(input.announce === false ? { announce: false } : {}),
  });
  if (starter) {
    starter.threadId = thread.id;
    starter.flags |= MessageFlag.HasThread;
    dispatchMessage(state, starter, "MESSAGE_UPDATE");
  }
  return thread;
}
