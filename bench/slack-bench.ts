/**
 * Slack under a burst (see bench/burst.ts): the real Bolt app and SlackAdapter over HTTP, against the fake
 * Slack from test/fakes, which judges each acknowledgement by Slack's 3 s. A command counts as delivered once its
 * root message's status says "Done" (after the upload into its thread).
 *
 *   npm run bench:slack                                   # PGlite under a temporary DATA_DIR
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:slack   # a scratch database there
 *   npm run bench:slack -- --burst 200 --runs 5 --delay 2000
 */
import { SlackAdapter } from "../adapters/slack/adapter.ts";
import { startFakeSlack } from "../test/fakes/slack-server.ts";
import { runBurstBench } from "./burst.ts";

const CHANNEL = "C0001";

await runBurstBench(
  {
    name: "Slack",
    async start({ engine, inbox, logger }, users) {
      const slack = await startFakeSlack();
      const ids = users.map((_, i) => `U8${String(i).padStart(5, "0")}`);
      for (const [i, id] of ids.entries()) slack.addUser(id, users[i] ?? id);
      const adapter = new SlackAdapter({
        engine,
        inbox,
        logger,
        botToken: slack.botToken,
        signingSecret: slack.signingSecret,
        apiUrl: slack.apiUrl,
        port: 0,
      });
      const url = `http://127.0.0.1:${await adapter.start()}/slack/events`;
      slack.setEchoTarget(url);
      return {
        async fire(run) {
          const acks = await Promise.all(
            ids.map((user_id, i) =>
              slack.sendSlashCommand(url, {
                text: `bench run ${run} poster ${i} --quality low`,
                channel_id: CHANNEL,
                user_id,
              }),
            ),
          );
          return acks.map((ack) => ({ ms: ack.latencyMs ?? Number.POSITIVE_INFINITY, late: !ack.ok }));
        },
        delivered: () =>
          slack.messages(CHANNEL).filter((m) => m.user === slack.botUserId && m.text.includes("Done")).length,
        reset: () => slack.reset(),
        async stop() {
          await adapter.stop();
          await slack.close();
        },
      };
    },
  },
  "bench:slack",
);
