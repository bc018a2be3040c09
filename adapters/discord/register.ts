import { loadConfig } from "../../src/config.ts";
import { AppError } from "../../src/errors.ts";
import { registerCommands } from "./commands.ts";

/**
 * `npm run discord:register`: registers `/imagine` with Discord — globally, or for the server named by
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

main().catch((error: unknown) => {
  const message =
    error instanceof AppError ? error.userMessage : error instanceof Error ? error.message : String(error);
  process.stderr.write(`Could not register the commands: ${message}\n`);
  process.exit(1);
});
