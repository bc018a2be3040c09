import { pathToFileURL } from "node:url";
import {
  ApplicationIntegrationType,
  type ChatInputCommandInteraction,
  InteractionContextType,
  REST,
  type RESTPutAPIApplicationCommandsResult,
  Routes,
  SlashCommandBuilder,
} from "discord.js";
import { loadConfig } from "../../src/config.ts";
import type { ImageParams } from "../../src/domain.ts";
import { AppError } from "../../src/errors.ts";
import { sizeForAspect, validateSize } from "../../src/request/image-size.ts";

/**
 * What is registered with Discord: the `/imagine` command and its options, and how those options read back as
 * image parameters. `npm run discord:register` registers it (this file run as a script).
 */

/** The aspect ratios offered as choices; `--ar` typed into the prompt takes any ratio from 1:3 to 3:1. */
export const ASPECT_CHOICES = ["1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"] as const;
export const QUALITY_CHOICES = ["low", "medium", "high", "auto"] as const;
export const FORMAT_CHOICES = ["png", "jpeg", "webp"] as const;

/** `/canvas usage`: what the person, the channel and the server have spent, against the budgets. */
export function canvasCommand() {
  return new SlashCommandBuilder()
    .setName("canvas")
    .setDescription("threadcanvas: what has been spent")
    .setContexts(InteractionContextType.Guild)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .addSubcommand((sub) =>
      sub
        .setName("usage")
        .setDescription("What you, this channel and this server have spent, against the budgets"),
    );
}

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

/**
 * The parameters a /imagine's options set, merged with the flags typed into its prompt (`typed`); the same
 * setting given both ways must agree. Throws AppError with a message for the person.
 */
export function imagineParams(
  interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>,
  typed: Partial<ImageParams>,
): Partial<ImageParams> {
  const options: Partial<ImageParams> = {};
  const aspect = interaction.options.getString("aspect");
  const size = interaction.options.getString("size");
  if (aspect && size) throw invalid("Use aspect or size, not both: aspect picks a shape and its size.");
  if (aspect) options.size = sizeForAspect(aspect);
  if (size) options.size = validateSize(size);
  const quality = interaction.options.getString("quality");
  if (quality) options.quality = quality as ImageParams["quality"];
  const count = interaction.options.getInteger("count");
  if (count !== null) options.n = count;
  const format = interaction.options.getString("format");
  if (format) options.format = format as ImageParams["format"];
  const think = interaction.options.getBoolean("think");
  if (think !== null) options.think = think;
  for (const [name, value] of Object.entries(options) as Array<[keyof ImageParams, unknown]>) {
    const flag = typed[name];
    if (flag === undefined || flag === value) continue;
    const setting = SETTINGS[name] ?? { option: name, flag: `--${name}` };
    throw invalid(
      `The ${setting.option} option (${String(value)}) and ${setting.flag} in the prompt (${String(flag)}) disagree; give it once.`,
    );
  }
  return { ...typed, ...options };
}

/** Which option and which typed flag set each parameter. */
const SETTINGS: Partial<Record<keyof ImageParams, { option: string; flag: string }>> = {
  size: { option: "aspect/size", flag: "--ar/--size" },
  quality: { option: "quality", flag: "--quality" },
  n: { option: "count", flag: "--n" },
  format: { option: "format", flag: "--format" },
  think: { option: "think", flag: "--think" },
};

function invalid(message: string): AppError {
  return new AppError("invalid_flag", message);
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

/** Overwrites the app's commands with `/imagine` and `/canvas`: globally, or for one server when `guildId` is given. */
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
    return (await rest.put(route, {
      body: [imagineCommand(), canvasCommand()],
    })) as RESTPutAPIApplicationCommandsResult;
  } finally {
    // The REST client sweeps its rate-limit buckets on timers; a one-off script should not wait for them.
    rest.clearHashSweeper();
    rest.clearHandlerSweeper();
  }
}

/**
 * `npm run discord:register`: registers `/imagine` and `/canvas` with Discord — globally, or for the server named by
 * DISCORD_GUILD_ID (which shows up at once, handy while setting up). Reads DISCORD_TOKEN and DISCORD_API_URL.
 */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  if (!config.discord) {
    throw new AppError("config_invalid", "DISCORD_TOKEN is not set", {
      userMessage:
        "Set DISCORD_TOKEN to your bot's token (Discord developer portal → your app → Bot → Token).",
    });
  }
  const { token, apiUrl, guildId } = config.discord;
  const commands = await registerCommands({ token, apiUrl, guildId });
  const names = commands.map((command) => `/${command.name}`).join(", ");
  const where = guildId
    ? `for server ${guildId} (available now)`
    : "globally (Discord may take up to an hour to show them everywhere)";
  process.stdout.write(`Registered ${names} ${where}.\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    const message =
      error instanceof AppError ? error.userMessage : error instanceof Error ? error.message : String(error);
    process.stderr.write(`Could not register the commands: ${message}\n`);
    process.exit(1);
  });
}
