import {
  ApplicationIntegrationType,
  InteractionContextType,
  REST,
  type RESTPutAPIApplicationCommandsResult,
  Routes,
  SlashCommandBuilder,
} from "discord.js";

/** The aspect ratios offered as choices; `--ar` typed into the prompt takes any ratio from 1:3 to 3:1. */
export const ASPECT_CHOICES = ["1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"] as const;
export const QUALITY_CHOICES = ["low", "medium", "high", "auto"] as const;
export const FORMAT_CHOICES = ["png", "jpeg", "webp"] as const;

/** `/imagine`: the prompt, and options for what the flags typed into the prompt can also say. */
export function imagineCommand() {
  return new SlashCommandBuilder()
    .setName("imagine")
    .setDescription("Make an image with gpt-image-2; reply in its thread to edit it")
    .setContexts(InteractionContextType.Guild)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .addStringOption((o) =>
      o
        .setName("prompt")
        .setDescription("What to draw; flags like --ar 16:9 --quality high work here too")
        .setRequired(true)
        .setMaxLength(6000),
    )
    .addStringOption((o) =>
      o
        .setName("aspect")
        .setDescription("Shape of the image")
        .addChoices(...ASPECT_CHOICES.map((value) => ({ name: value, value }))),
    )
    .addStringOption((o) =>
      o.setName("size").setDescription("Exact size WIDTHxHEIGHT (multiples of 16), or auto").setMaxLength(20),
    )
    .addStringOption((o) =>
      o
        .setName("quality")
        .setDescription("More detail costs more and takes longer")
        .addChoices(...QUALITY_CHOICES.map((value) => ({ name: value, value }))),
    )
    .addIntegerOption((o) =>
      o.setName("count").setDescription("How many images (1–10)").setMinValue(1).setMaxValue(10),
    )
    .addStringOption((o) =>
      o
        .setName("format")
        .setDescription("File format")
        .addChoices(...FORMAT_CHOICES.map((value) => ({ name: value, value }))),
    )
    .addAttachmentOption((o) =>
      o.setName("image").setDescription("An image to use as a reference (PNG, JPEG or WebP)"),
    )
    .addBooleanOption((o) =>
      o.setName("think").setDescription("Let a reasoning model plan the image first (slower)"),
    )
    .toJSON();
}

export interface RegisterOptions {
  token: string;
  /** Base of Discord's REST API (default `https://discord.com/api`). */
  apiUrl?: string;
  /** Looked up from the token when absent. */
  applicationId?: string;
  /** Registers for this one server (instant), instead of globally. */
  guildId?: string;
}

/** Overwrites the app's commands with `/imagine`: globally, or for one server when `guildId` is given. */
export async function registerCommands(
  options: RegisterOptions,
): Promise<RESTPutAPIApplicationCommandsResult> {
  const rest = new REST(options.apiUrl ? { api: options.apiUrl } : {}).setToken(options.token);
  try {
    const applicationId =
      options.applicationId ?? ((await rest.get(Routes.currentApplication())) as { id: string }).id;
    const route = options.guildId
      ? Routes.applicationGuildCommands(applicationId, options.guildId)
      : Routes.applicationCommands(applicationId);
    return (await rest.put(route, { body: [imagineCommand()] })) as RESTPutAPIApplicationCommandsResult;
  } finally {
    // The REST client sweeps its rate-limit buckets on timers; a one-off script should not wait for them.
    rest.clearHashSweeper();
    rest.clearHandlerSweeper();
  }
}
