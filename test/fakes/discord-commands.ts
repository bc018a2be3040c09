import { guildJson, memberJson, userJson } from "./discord-objects.ts";
import {
  DiscordApiError,
  Errors,
  FormErrors,
  type Json,
  ok,
  type RestRequest,
  type Route,
} from "./discord-rest.ts";
import { type CommandRecord, type DiscordState, snowflake } from "./discord-state.ts";

/**
 * Application commands (global and guild: bulk overwrite, create, list, fetch, delete), checked against Discord's
 * documented rules: names (lowercase `[-_'\p{L}\p{N}…]{1,32}` for slash commands), description lengths, ≤ 25
 * options and choices, required options before optional ones, unique names, subcommand nesting, type-specific
 * fields, and the 4000-character total. Also the identity routes: `/gateway/bot`, `/users/@me`, `/applications/@me`.
 */

const CHAT_INPUT = 1;
const USER = 2;
const MESSAGE = 3;
const PRIMARY_ENTRY_POINT = 4;
const SUB_COMMAND = 1;
const SUB_COMMAND_GROUP = 2;

const NAME = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;
const OPTION_TYPES = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
const CHOICE_TYPES = new Set([3, 4, 10]);
/** Discord's caps per application: 100 slash commands, 5 user and 5 message commands, 1 entry point. */
const CAPS: Record<number, number> = { 1: 100, 2: 5, 3: 5, 4: 1 };

function validName(name: unknown, type: number): boolean {
  if (typeof name !== "string") return false;
  if (type !== CHAT_INPUT) return [...name].length >= 1 && [...name].length <= 32;
  // Slash command and option names must use the lowercase variant of any letter that has one.
  return NAME.test(name) && name === name.toLowerCase();
}

function lengthBetween(value: unknown, min: number, max: number): boolean {
  return typeof value === "string" && [...value].length >= min && [...value].length <= max;
}

function validateOptions(
  options: unknown,
  errors: FormErrors,
  path: Array<string | number>,
  depth: 0 | 1 | 2,
  chars: { total: number },
): void {
  if (options === undefined || options === null) return;
  if (!Array.isArray(options)) {
    errors.add(path, "BASE_TYPE_ARRAY", "Must be an array.");
    return;
  }
  if (options.length > 25) errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
  const names = new Set<string>();
  let sawOptional = false;
  const nesting = options.filter((o) => o?.type === SUB_COMMAND || o?.type === SUB_COMMAND_GROUP).length;
  if (nesting > 0 && nesting < options.length)
    errors.add(
      path,
      "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
      "Subcommands and groups cannot be mixed with other options",
    );
  options.forEach((raw: unknown, i) => {
    const at = [...path, i];
    const option = (raw ?? {}) as Json;
    const type = option.type as number;
    if (!OPTION_TYPES.has(type)) {
      errors.add(
        [...at, "type"],
        "BASE_TYPE_CHOICES",
        "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.",
      );
      return;
    }
    if (!validName(option.name, CHAT_INPUT))
      errors.add([...at, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid");
    else if (names.has(option.name as string))
      errors.add(
        [...at, "name"],
        "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
        "Option names must be unique",
      );
    else names.add(option.name as string);
    if (!lengthBetween(option.description, 1, 100))
      errors.add([...at, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
    chars.total += String(option.name ?? "").length + String(option.description ?? "").length;

    if (type === SUB_COMMAND_GROUP && depth !== 0)
      errors.add(
        [...at, "type"],
        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
        "Subcommand groups can only be nested in a command",
      );
    if (type === SUB_COMMAND && depth === 2)
      errors.add(
        [...at, "type"],
        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
        "Subcommands cannot be nested in a subcommand",
      );
    if (type === SUB_COMMAND_GROUP) {
      const children = Array.isArray(option.options) ? (option.options as Json[]) : [];
      if (children.some((c) => c?.type !== SUB_COMMAND))
        errors.add(
          [...at, "options"],
          "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
          "Subcommand groups may only contain subcommands",
        );
    }
    if (type === SUB_COMMAND || type === SUB_COMMAND_GROUP) {
      if (option.required !== undefined && option.required !== false)
        errors.add(
          [...at, "required"],
          "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
          "Subcommands cannot be required",
        );
      validateOptions(option.options, errors, [...at, "options"], type === SUB_COMMAND_GROUP ? 1 : 2, chars);
      return;
    }
    if (option.options !== undefined)
      errors.add(
        [...at, "options"],
        "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
        "Only subcommands and groups have options",
      );

    if (option.required === true) {
      if (sawOptional)
        errors.add(
          [...at, "required"],
          "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
          "Required options must be placed before non-required options",
        );
    } else sawOptional = true;

    if (option.choices !== undefined && option.choices !== null) {
      if (!CHOICE_TYPES.has(type))
        errors.add(
          [...at, "choices"],
          "APPLICATION_COMMAND_OPTION_CHOICES_NOT_ALLOWED",
          "Only string, integer and number options have choices",
        );
      else if (!Array.isArray(option.choices))
        errors.add([...at, "choices"], "BASE_TYPE_ARRAY", "Must be an array.");
      else {
        if (option.choices.length > 25)
          errors.add([...at, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
        if (option.autocomplete === true)
          errors.add(
            [...at, "autocomplete"],
            "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_WITH_CHOICES",
            "Autocomplete cannot be used with choices",
          );
        option.choices.forEach((choice: Json, j: number) => {
          const c = choice ?? {};
          if (!lengthBetween(c.name, 1, 100))
            errors.add(
              [...at, "choices", j, "name"],
              "BASE_TYPE_BAD_LENGTH",
              "Must be between 1 and 100 in length.",
            );
          const valueOk =
            type === 3
              ? lengthBetween(c.value, 1, 100)
              : type === 4
                ? Number.isSafeInteger(c.value)
                : typeof c.value === "number" && Number.isFinite(c.value);
          if (!valueOk)
            errors.add(
              [...at, "choices", j, "value"],
              "BASE_TYPE_INVALID",
              `Invalid choice value for option type ${type}.`,
            );
          chars.total += String(c.name ?? "").length + String(c.value ?? "").length;
        });
      }
    }
    for (const key of ["min_value", "max_value"])
      if (option[key] !== undefined && type !== 4 && type !== 10)
        errors.add(
          [...at, key],
          "APPLICATION_COMMAND_OPTION_INVALID",
          `${key} is only for integer and number options`,
        );
    for (const key of ["min_length", "max_length"]) {
      if (option[key] === undefined) continue;
      const value = option[key] as number;
      const min = key === "min_length" ? 0 : 1;
      if (type !== 3)
        errors.add([...at, key], "APPLICATION_COMMAND_OPTION_INVALID", `${key} is only for string options`);
      else if (!Number.isInteger(value) || value < min || value > 6000)
        errors.add([...at, key], "NUMBER_TYPE_MAX", `int value should be between ${min} and 6000.`);
    }
    if (option.channel_types !== undefined && type !== 7)
      errors.add(
        [...at, "channel_types"],
        "APPLICATION_COMMAND_OPTION_INVALID",
        "channel_types is only for channel options",
      );
  });
}

function validateCommand(raw: unknown, errors: FormErrors, path: Array<string | number>): void {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType");
    return;
  }
  const command = raw as Json;
  const type = (command.type as number | undefined) ?? CHAT_INPUT;
  if (![CHAT_INPUT, USER, MESSAGE, PRIMARY_ENTRY_POINT].includes(type)) {
    errors.add([...path, "type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.");
    return;
  }
  if (!validName(command.name, type))
    errors.add([...path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid");
  if (type === CHAT_INPUT || type === PRIMARY_ENTRY_POINT) {
    if (!lengthBetween(command.description, 1, 100))
      errors.add([...path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
  } else if (command.description !== undefined && command.description !== "")
    errors.add(
      [...path, "description"],
      "APPLICATION_COMMAND_INVALID_DESCRIPTION",
      "Context menu commands cannot have a description",
    );
  if (type !== CHAT_INPUT && command.options !== undefined && command.options !== null)
    errors.add(
      [...path, "options"],
      "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
      "Only slash commands have options",
    );
  const chars = { total: String(command.name ?? "").length + String(command.description ?? "").length };
  validateOptions(command.options, errors, [...path, "options"], 0, chars);
  if (chars.total > 4000)
    errors.add(path, "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (4000)");
  const permissions = command.default_member_permissions;
  if (
    permissions !== undefined &&
    permissions !== null &&
    (typeof permissions !== "string" || !/^\d+$/.test(permissions))
  )
    errors.add(
      [...path, "default_member_permissions"],
      "BASE_TYPE_INVALID",
      "Must be a permission bitfield string.",
    );
  for (const [key, allowed] of [
    ["contexts", [0, 1, 2]],
    ["integration_types", [0, 1]],
  ] as const) {
    const value = command[key];
    if (value === undefined || value === null) continue;
    if (!Array.isArray(value) || value.some((v) => !(allowed as readonly number[]).includes(v)))
      errors.add([...path, key], "BASE_TYPE_CHOICES", `Value must be one of {${allowed.join(", ")}}.`);
  }
}

function commandRecord(
  state: DiscordState,
  raw: Json,
  guildId: string,
  previous: CommandRecord | undefined,
): CommandRecord {
  const type = (raw.type as number | undefined) ?? CHAT_INPUT;
  const record: CommandRecord = {
    id: previous?.id ?? snowflake(state),
    application_id: state.applicationId,
    version: snowflake(state),
    default_member_permissions: (raw.default_member_permissions as string | null | undefined) ?? null,
    type,
    name: raw.name as string,
    name_localizations: raw.name_localizations ?? null,
    description: (raw.description as string | undefined) ?? "",
    description_localizations: raw.description_localizations ?? null,
    ...(Array.isArray(raw.options) && raw.options.length > 0
      ? { options: structuredClone(raw.options) }
      : {}),
    contexts: raw.contexts ?? null,
    integration_types: raw.integration_types ?? [0],
    nsfw: raw.nsfw === true,
  };
  if (guildId) record.guild_id = guildId;
  else record.dm_permission = raw.dm_permission !== false;
  return record;
}

const key = (c: { name?: unknown; type?: unknown }) =>
  `${(c.type as number | undefined) ?? CHAT_INPUT}:${String(c.name)}`;

function scope(state: DiscordState, params: Record<string, string>): string {
  if (params.application !== state.applicationId) throw Errors.notAuthorizedForApplication();
  const guild = params.guild;
  if (guild === undefined) return "";
  // The bot is in one guild; for any other id the API answers Missing Access.
  if (guild !== state.guildId) throw Errors.missingAccess();
  return guild;
}

function bulkOverwrite(state: DiscordState, req: RestRequest, guildId: string): CommandRecord[] {
  const errors = new FormErrors();
  if (!Array.isArray(req.body)) {
    errors.add([], "BASE_TYPE_ARRAY", "Must be an array.");
    errors.throwIfAny();
  }
  const list = req.body as unknown[];
  list.forEach((command, i) => {
    validateCommand(command, errors, [i]);
  });
  const seen = new Set<string>();
  list.forEach((command, i) => {
    const k = key(command as Json);
    if (seen.has(k))
      errors.add(
        [i, "name"],
        "APPLICATION_COMMANDS_DUPLICATE_NAME",
        `Application command names must be unique`,
      );
    seen.add(k);
  });
  errors.throwIfAny();
  for (const [type, cap] of Object.entries(CAPS))
    if (list.filter((c) => ((c as Json).type ?? CHAT_INPUT) === Number(type)).length > cap)
      throw new DiscordApiError(400, 30032, `Maximum number of application commands reached (${cap})`);
  const previous = state.commands.get(guildId) ?? [];
  const next = list.map((raw) =>
    commandRecord(
      state,
      raw as Json,
      guildId,
      previous.find((p) => key(p) === key(raw as Json)),
    ),
  );
  state.commands.set(guildId, next);
  return next;
}

function createOne(state: DiscordState, req: RestRequest, guildId: string) {
  const errors = new FormErrors();
  validateCommand(req.body, errors, []);
  errors.throwIfAny();
  const raw = req.body as Json;
  const list = state.commands.get(guildId) ?? [];
  const previous = list.find((p) => key(p) === key(raw));
  const type = (raw.type as number | undefined) ?? CHAT_INPUT;
  if (!previous && list.filter((c) => c.type === type).length >= (CAPS[type] ?? 0))
    throw new DiscordApiError(400, 30032, `Maximum number of application commands reached (${CAPS[type]})`);
  const record = commandRecord(state, raw, guildId, previous);
  state.commands.set(guildId, [...list.filter((c) => c !== previous), record]);
  return { status: previous ? 200 : 201, body: record };
}

function commandOr404(state: DiscordState, guildId: string, id: string | undefined): CommandRecord {
  const command = state.commands.get(guildId)?.find((c) => c.id === id);
  if (!command) throw Errors.unknownCommand();
  return command;
}

function commandRoutes(prefix: string): Route[] {
  return [
    {
      method: "GET",
      pattern: prefix,
      auth: true,
      handler: (state, _req, p) => ok(state.commands.get(scope(state, p)) ?? []),
    },
    {
      method: "PUT",
      pattern: prefix,
      auth: true,
      handler: (state, req, p) => ok(bulkOverwrite(state, req, scope(state, p))),
    },
    {
      method: "POST",
      pattern: prefix,
      auth: true,
      handler: (state, req, p) => createOne(state, req, scope(state, p)),
    },
    {
      method: "GET",
      pattern: `${prefix}/{command}`,
      auth: true,
      handler: (state, _req, p) => ok(commandOr404(state, scope(state, p), p.command)),
    },
    {
      method: "DELETE",
      pattern: `${prefix}/{command}`,
      auth: true,
      handler: (state, _req, p) => {
        const guildId = scope(state, p);
        const command = commandOr404(state, guildId, p.command);
        state.commands.set(
          guildId,
          (state.commands.get(guildId) ?? []).filter((c) => c !== command),
        );
        return ok();
      },
    },
  ];
}

export const COMMAND_ROUTES: Route[] = [
  ...commandRoutes("/applications/{application}/commands"),
  ...commandRoutes("/applications/{application}/guilds/{guild}/commands"),
];

export const IDENTITY_ROUTES: Route[] = [
  {
    method: "GET",
    pattern: "/gateway/bot",
    auth: true,
    handler: (state) =>
      ok({
        url: state.baseUrl.replace(/^http/, "ws"),
        shards: state.shardCount,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
      }),
  },
  {
    method: "GET",
    pattern: "/gateway",
    auth: false,
    handler: (state) => ok({ url: state.baseUrl.replace(/^http/, "ws") }),
  },
  { method: "GET", pattern: "/users/@me", auth: true, handler: (state) => ok(userJson(state.bot)) },
  {
    // What a process without a gateway session (ROLE=worker) reads to know the server a channel is in.
    method: "GET",
    pattern: "/guilds/{guild}",
    auth: true,
    handler: (state, _req, p) => {
      if (p.guild !== state.guildId || state.leftGuilds.has(p.guild)) throw Errors.unknownGuild();
      return ok(guildJson(state));
    },
  },
  {
    method: "GET",
    pattern: "/guilds/{guild}/members/{user}",
    auth: true,
    handler: (state, _req, p) => {
      if (p.guild !== state.guildId || state.leftGuilds.has(p.guild)) throw Errors.unknownGuild();
      if (!state.memberRoles.has(p.user ?? "")) throw new DiscordApiError(404, 10007, "Unknown Member");
      return ok(memberJson(state, p.user ?? "", true));
    },
  },
  {
    // Leave a server: 204, then GUILD_DELETE (without `unavailable`: removed, not an outage).
    method: "DELETE",
    pattern: "/users/@me/guilds/{guild}",
    auth: true,
    handler: (state, _req, p) => {
      const id = p.guild ?? "";
      const member = (id === state.guildId || state.otherGuilds.has(id)) && !state.leftGuilds.has(id);
      if (!member) throw Errors.unknownGuild();
      state.leftGuilds.add(id);
      state.otherGuilds.delete(id);
      state.dispatch("GUILD_DELETE", { id });
      return ok();
    },
  },
  {
    method: "GET",
    pattern: "/users/{user}",
    auth: true,
    handler: (state, _req, p) => {
      const user = state.users.get(p.user ?? "");
      if (!user) throw new DiscordApiError(404, 10013, "Unknown User");
      return ok(userJson(user));
    },
  },
  {
    method: "GET",
    pattern: "/applications/@me",
    auth: true,
    handler: (state) =>
      ok({
        id: state.applicationId,
        name: state.bot.username,
        icon: null,
        description: "",
        summary: "",
        type: null,
        bot_public: false,
        bot_require_code_grant: false,
        verify_key: "0".repeat(64),
        flags: 0,
        owner: {
          id: "1000000000000000001",
          username: "owner",
          discriminator: "0",
          global_name: null,
          avatar: null,
          public_flags: 0,
        },
        team: null,
        bot: userJson(state.bot),
        approximate_guild_count: 1,
        install_params: { scopes: ["bot", "applications.commands"], permissions: "0" },
        integration_types_config: { "0": {} },
      }),
  },
];
