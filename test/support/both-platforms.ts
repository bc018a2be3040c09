import pino from "pino";
import { DiscordAdapter } from "../../adapters/discord/adapter.ts";
import { registerCommands } from "../../adapters/discord/setup.ts";
import type { SlackAdapter } from "../../adapters/slack/adapter.ts";
import type { EngineOptions } from "../../src/engine/engine.ts";
import { type FakeDiscord, type FakeDiscordOptions, startFakeDiscord } from "../fakes/discord-server.ts";
import { type FakeSlack, startFakeSlack } from "../fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./engine-harness.ts";
import { startSlackBot } from "./slack-bot.ts";

/**
 * One engine with both adapters on it, each talking to its fake platform: for the suites that check a rule the
 * same way on Slack and Discord (limits, budgets, confirmations, cancel). `engine` may depend on the fake
 * Discord (its people's ids are made when it starts).
 */
export interface BothPlatforms {
  h: EngineHarness;
  slack: FakeSlack;
  /** Where the Slack bot takes events (`POST /slack/events`). */
  url: string;
  discord: FakeDiscord;
  close(): Promise<void>;
}

export async function startBothPlatforms(
  options: { engine?: (discord: FakeDiscord) => EngineOptions; discord?: FakeDiscordOptions } = {},
): Promise<BothPlatforms> {
  const discord = await startFakeDiscord(options.discord);
  const h = await startEngineHarness({ engine: options.engine?.(discord) ?? {} });
  const slack = await startFakeSlack();
  const { adapter: slackAdapter, url } = await startSlackBot(h, slack);
  await registerCommands({ token: discord.botToken, apiUrl: discord.apiUrl });
  const discordAdapter = new DiscordAdapter({
    engine: h.engine,
    inbox: h.inbox,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    token: discord.botToken,
    apiUrl: discord.apiUrl,
  });
  await discordAdapter.start();
  return {
    h,
    slack,
    url,
    discord,
    async close() {
      await slackAdapter.stop();
      await discordAdapter.stop();
      await slack.close();
      await discord.close();
      await h.close();
    },
  };
}
