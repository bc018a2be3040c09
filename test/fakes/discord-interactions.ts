import { isEmpty, type MessageContent, readMessageBody } from "./discord-message-body.ts";
import { dispatchMessage, editMessage } from "./discord-messages.ts";
import { messageJson, storeMessage, userJson } from "./discord-objects.ts";
import {
  DiscordApiError,
  Errors,
  FormErrors,
  type Json,
  objectBody,
  ok,
  type RestRequest,
  type Route,
} from "./discord-rest.ts";
import {
  type CallbackRecord,
  changed,
  type DiscordState,
  type InteractionRecord,
  MessageFlag,
  now,
  type StoredMessage,
} from "./discord-state.ts";

/**
 * Interaction responses (reference/protocols.md A5, A6): `POST /interactions/{id}/{token}/callback` with Discord's
 * timing rules (the first response within the ack deadline, 3 s by default, else 10062; one response only, else
 * 40060) and the per-interaction-type response types; then the interaction's webhook
 * (`/webhooks/{application}/{token}…`: `@original` read/edit/delete and follow-ups), valid for 15 minutes after
 * the interaction (then 401 / 50027 Invalid Webhook Token). Neither needs the bot's Authorization header.
 */

const CALLBACK_TYPES: Record<number, number[]> = {
  // Application commands: message, deferred message, modal.
  2: [4, 5, 9],
  // Message components may also update the message they are on (deferred or not).
  3: [4, 5, 6, 7, 9],
};

function metadata(state: DiscordState, interaction: InteractionRecord, extra: Json = {}): Json {
  const user = state.users.get(interaction.userId);
  return {
    id: interaction.id,
    type: interaction.type,
    user: user ? userJson(user) : { id: interaction.userId },
    authorizing_integration_owners: { "0": state.guildId },
    ...(interaction.commandName ? { name: interaction.commandName, command_type: 1 } : {}),
    ...(interaction.sourceMessageId ? { interacted_message_id: interaction.sourceMessageId } : {}),
    ...extra,
  };
}

/** A message sent through the interaction (response or follow-up): authored by the bot, marked with the webhook. */
function interactionMessage(
  state: DiscordState,
  interaction: InteractionRecord,
  content: MessageContent,
  via: string,
  followUp?: { originalId: string | null },
): StoredMessage {
  const isCommand = interaction.type === 2;
  const message = storeMessage(
    state,
    {
      channelId: interaction.channelId,
      // 20 CHAT_INPUT_COMMAND for a command's response; a component's response replies to the clicked message.
      type: followUp ? 0 : isCommand ? 20 : 19,
      author: state.bot,
      ...content,
      webhookId: state.applicationId,
      applicationId: state.applicationId,
      interactionMetadata: metadata(
        state,
        interaction,
        followUp?.originalId ? { original_response_message_id: followUp.originalId } : {},
      ),
      ...(!isCommand && !followUp && interaction.sourceMessageId
        ? {
            messageReference: {
              type: 0 as const,
              message_id: interaction.sourceMessageId,
              channel_id: interaction.channelId,
              guild_id: state.guildId,
            },
          }
        : {}),
    },
    via,
  );
  dispatchMessage(state, message, "MESSAGE_CREATE");
  return message;
}

/** Records a refused callback on the interaction (late, second, malformed) before Discord's error goes out. */
function callback(state: DiscordState, req: RestRequest, params: Record<string, string>) {
  const at = now(state);
  const interaction = state.interactions.get(params.interaction ?? "");
  if (!interaction || interaction.token !== params.token) throw Errors.unknownInteraction();
  try {
    return respond(state, req, interaction, at);
  } catch (error) {
    if (error instanceof DiscordApiError) {
      const type = (req.body as Json | undefined)?.type;
      interaction.rejected.push({
        type: typeof type === "number" ? type : null,
        at,
        latencyMs: at - interaction.dispatchedAt,
        status: error.status,
        code: error.code,
      });
    }
    throw error;
  }
}

function respond(state: DiscordState, req: RestRequest, interaction: InteractionRecord, at: number) {
  if (interaction.ack) throw Errors.alreadyAcknowledged();
  // Discord invalidates the token when the deadline passes without a response.
  if (at - interaction.dispatchedAt > state.ackDeadlineMs) throw Errors.unknownInteraction();
  const body = objectBody(req);
  const type = body.type;
  const errors = new FormErrors();
  if (typeof type !== "number" || !Number.isInteger(type))
    errors.add(["type"], "BASE_TYPE_REQUIRED", "This field is required");
  else if (!(CALLBACK_TYPES[interaction.type] ?? []).includes(type))
    errors.add(
      ["type"],
      "INTERACTION_RESPONSE_TYPE_INVALID",
      `Response type ${type} is not valid for this interaction`,
    );
  const data = body.data;
  if (data !== undefined && data !== null && (typeof data !== "object" || Array.isArray(data)))
    errors.add(["data"], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType");
  errors.throwIfAny();
  const fields = (data ?? {}) as Json;
  const source = interaction.sourceMessageId ? state.messages.get(interaction.sourceMessageId) : undefined;
  let message: StoredMessage | undefined;
  switch (type) {
    case 4: {
      const content = readMessageBody(state, req, fields, {
        channelId: interaction.channelId,
        allowEphemeral: true,
        path: ["data"],
      });
      if (isEmpty(content)) throw Errors.emptyMessage();
      message = interactionMessage(state, interaction, content, "callback:4");
      break;
    }
    case 5: {
      const flags = (typeof fields.flags === "number" ? fields.flags : 0) & MessageFlag.Ephemeral;
      message = interactionMessage(
        state,
        interaction,
        { content: "", embeds: [], components: [], attachments: [], flags: flags | MessageFlag.Loading },
        "callback:5",
      );
      break;
    }
    case 6:
      message = source;
      break;
    case 7: {
      if (!source) throw Errors.unknownMessage();
      const next = readMessageBody(state, req, fields, {
        channelId: interaction.channelId,
        existing: source,
        allowEphemeral: false,
        path: ["data"],
      });
      if (isEmpty(next)) throw Errors.emptyMessage();
      editMessage(state, source, next, "callback:7");
      message = source;
      break;
    }
    case 9: {
      const modal = new FormErrors();
      const title = fields.title;
      if (
        typeof fields.custom_id !== "string" ||
        fields.custom_id.length < 1 ||
        fields.custom_id.length > 100
      )
        modal.add(["data", "custom_id"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
      if (typeof title !== "string" || title.length < 1 || title.length > 45)
        modal.add(["data", "title"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.");
      const components = fields.components;
      if (!Array.isArray(components) || components.length < 1 || components.length > 5)
        modal.add(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.");
      modal.throwIfAny();
      break;
    }
  }

  const ack: CallbackRecord = {
    type: type as number,
    latencyMs: at - interaction.dispatchedAt,
    at,
    ephemeral:
      type === 4 || type === 5 ? (((fields.flags as number) ?? 0) & MessageFlag.Ephemeral) !== 0 : false,
    data: data as Json | undefined,
    files: req.files.length,
  };
  interaction.ack = ack;
  if (message && type !== 9) interaction.originalMessageId = message.id;
  changed(state);
  if (req.query.get("with_response") !== "true") return ok();
  return ok({
    interaction: {
      id: interaction.id,
      type: interaction.type,
      ...(message && type !== 6
        ? {
            response_message_id: message.id,
            response_message_loading: (message.flags & MessageFlag.Loading) !== 0,
            response_message_ephemeral: (message.flags & MessageFlag.Ephemeral) !== 0,
          }
        : {}),
    },
    resource: { type, ...(message && type !== 6 ? { message: messageJson(state, message) } : {}) },
  });
}

/** The interaction behind a webhook URL; Discord refuses the token once it is 15 minutes old. */
function webhookInteraction(state: DiscordState, params: Record<string, string>): InteractionRecord {
  if (params.application !== state.applicationId) throw Errors.unknownWebhook();
  const interaction = state.interactionsByToken.get(params.token ?? "");
  if (!interaction || now(state) - interaction.dispatchedAt > state.interactionTokenTtlMs)
    throw Errors.invalidWebhookToken();
  return interaction;
}

function webhookMessage(
  state: DiscordState,
  interaction: InteractionRecord,
  id: string | undefined,
): StoredMessage {
  const messageId = id === "@original" ? interaction.originalMessageId : id;
  const message = messageId ? state.messages.get(messageId) : undefined;
  const mine =
    messageId === interaction.originalMessageId || interaction.followUpIds.includes(messageId ?? "");
  if (!message || message.deleted || !mine) throw Errors.unknownMessage();
  return message;
}

function checkThreadParam(req: RestRequest, message: StoredMessage): void {
  const threadId = req.query.get("thread_id");
  if (threadId !== null && threadId !== message.channelId) throw Errors.unknownMessage();
}

function webhookMessageRoutes(segment: string): Route[] {
  const pattern = `/webhooks/{application}/{token}/messages/${segment}`;
  const id = (p: Record<string, string>) => (segment === "@original" ? "@original" : p.message);
  return [
    {
      method: "GET",
      pattern,
      auth: false,
      handler: (state, req, p) => {
        const message = webhookMessage(state, webhookInteraction(state, p), id(p));
        checkThreadParam(req, message);
        return ok(messageJson(state, message));
      },
    },
    {
      method: "PATCH",
      pattern,
      auth: false,
      handler: (state, req, p) => {
        const interaction = webhookInteraction(state, p);
        const message = webhookMessage(state, interaction, id(p));
        checkThreadParam(req, message);
        const next = readMessageBody(state, req, objectBody(req), {
          channelId: message.channelId,
          existing: message,
          allowEphemeral: false,
        });
        if (isEmpty(next)) throw Errors.emptyMessage();
        editMessage(state, message, next, `PATCH /webhooks/…/messages/${id(p)}`);
        return ok(messageJson(state, message));
      },
    },
    {
      method: "DELETE",
      pattern,
      auth: false,
      handler: (state, req, p) => {
        const message = webhookMessage(state, webhookInteraction(state, p), id(p));
        checkThreadParam(req, message);
        message.deleted = true;
        if (!(message.flags & MessageFlag.Ephemeral))
          state.dispatch("MESSAGE_DELETE", {
            id: message.id,
            channel_id: message.channelId,
            guild_id: state.guildId,
          });
        changed(state);
        return ok();
      },
    },
  ];
}

export const INTERACTION_ROUTES: Route[] = [
  { method: "POST", pattern: "/interactions/{interaction}/{token}/callback", auth: false, handler: callback },
  ...webhookMessageRoutes("@original"),
  ...webhookMessageRoutes("{message}"),
  {
    method: "POST",
    pattern: "/webhooks/{application}/{token}",
    auth: false,
    handler: (state, req, p) => {
      const interaction = webhookInteraction(state, p);
      // Follow-ups need the interaction to have been answered first.
      if (!interaction.ack) throw Errors.unknownWebhook();
      const content = readMessageBody(state, req, objectBody(req), {
        channelId: interaction.channelId,
        allowEphemeral: true,
      });
      if (isEmpty(content)) throw Errors.emptyMessage();
      const message = interactionMessage(state, interaction, content, "POST /webhooks/…", {
        originalId: interaction.originalMessageId,
      });
      interaction.followUpIds.push(message.id);
      changed(state);
      return req.query.get("wait") === "true" ? ok(messageJson(state, message)) : ok();
    },
  },
];
