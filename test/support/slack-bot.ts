import pino from "pino";
import { SlackAdapter, type SlackAdapterOptions } from "../../adapters/slack/adapter.ts";
import type { ConversationEngine, Inbox } from "../../src/ports.ts";
import type { FakeSlack } from "../fakes/slack-server.ts";

/**
 * The real Slack adapter over HTTP, in this process, against the fake Slack: listening on a free port, with the
 * fake echoing the bot's own posts back to it as Slack does. `url` is its /slack/events.
 */
export async function startSlackBot(
  { engine, inbox }: { engine: ConversationEngine; inbox: Inbox },
  slack: FakeSlack,
  options: Partial<SlackAdapterOptions> = {},
): Promise<{ adapter: SlackAdapter; url: string }> {
  const adapter = new SlackAdapter({
    engine,
    inbox,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    botToken: slack.botToken,
    signingSecret: slack.signingSecret,
    apiUrl: slack.apiUrl,
    port: 0,
    ...options,
  });
  const url = `http://127.0.0.1:${await adapter.start()}/slack/events`;
  slack.setEchoTarget(url);
  return { adapter, url };
}
