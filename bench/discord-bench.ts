/**
 * Discord under a burst (see bench/burst.ts): the real discord.js client in DiscordAdapter, against the fake
 * Discord from test/fakes, which refuses a first response after 3 s (10062). A command counts as delivered once
 * its reply shows the image with its buttons.
 *
 *   npm run bench:discord
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:discord
 *   npm run bench:discord -- --burst 200 --runs 5 --delay 2000
 */

import { DiscordAdapter } from "../adapters/discord/adapter.ts";
import { registerCommands } from "../adapters/discord/setup.ts";
import { type InteractionHandle, startFakeDiscord } from "../test/fakes/discord-server.ts";
import { runBurstBench } from "./burst.ts";

await runBurstBench(
  {
    name: "Discord",
    async start({ engine, inbox, logger }, users) {
      const discord = await startFakeDiscord({ users: [...users] });
      await registerCommands({ token: discord.botToken, apiUrl: discord.apiUrl });
      const adapter = new DiscordAdapter({
        engine,
        inbox,
        logger,
        token: discord.botToken,
        apiUrl: discord.apiUrl,
      });
      await adapter.start();
      let handles: InteractionHandle[] = [];
      return {
        async fire(run) {
          handles = users.map((user, i) =>
            discord.slashCommand({
              name: "imagine",
              user,
              options: { prompt: `bench run ${run} poster ${i}`, quality: "low" },
            }),
          );
          return Promise.all(
            handles.map((handle) =>
              handle.waitForAck(10_000).then(
                (ack) => ({ ms: ack.latencyMs, late: false }),
                () => ({ ms: Number.POSITIVE_INFINITY, late: true }), // refused (10062) or never sent
              ),
            ),
          );
        },
        delivered: () =>
          handles.filter((h) => (h.original?.components.length ?? 0) > 0 && h.original?.attachments.length)
            .length,
        reset: () => {
          handles = [];
        },
        async stop() {
          await adapter.stop();
          await discord.close();
        },
      };
    },
  },
  "bench:discord",
);
