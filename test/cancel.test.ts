import { MessageFlags } from "discord.js";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FakeDiscord } from "./fakes/discord-server.ts";
import type { FakeSlack } from "./fakes/slack-server.ts";
import { type BothPlatforms, startBothPlatforms } from "./support/both-platforms.ts";
import type { EngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * Cancel, through both adapters: the status of a turn still queued or drawing carries a Cancel button; the
 * person who asked (or an admin) can press it — the OpenAI call is aborted, what it may have cost stays in the
 * ledger, and the status says who canceled it. Anyone else is told privately, and nothing changes.
 */
const REFUSED = "✖ Only the person who asked, or an admin, can cancel it.";

let both: BothPlatforms;
let h: EngineHarness;
let slack: FakeSlack;
let url = "";
let discord: FakeDiscord;

beforeAll(async () => {
  both = await startBothPlatforms();
  ({ h, slack, url, discord } = both);
});
afterAll(() => both?.close());
beforeEach(() => {
  h.fake.reset();
  h.fake.setLatency(15_000); // OpenAI is still drawing when Cancel is pressed
});

/** The turn the fake OpenAI was asked to draw, found by its ledger row's X-Client-Request-Id, and its rows. */
async function ledgerOfOnlyCall() {
  const id = h.fake.requests[0]?.headers["x-client-request-id"] ?? "";
  const found = await h.database.db.execute<{ turn_id: string }>(
    sql`select turn_id from ledger where client_request_id = ${id}`,
  );
  const turn = await h.store.getTurn(found.rows[0]?.turn_id ?? "");
  if (!turn) throw new Error("no ledger row for the call");
  return { turn, entries: await h.store.ledgerEntries(turn.id) };
}

describe("Slack", () => {
  it("Cancel on the root: refused to someone else; the asker's aborts the call and says so", async () => {
    await slack.sendSlashCommand(url, { text: "a very slow sunset", channel_id: "C0001", user_id: "U0001" });
    await waitUntil(() => h.fake.requests.length === 1, "the call to OpenAI");
    const root = await waitUntil(
      () =>
        slack
          .messages("C0001")
          .find((m) => m.user === slack.botUserId && JSON.stringify(m.blocks ?? []).includes('"tcx_cancel"')),
      "the root with a Cancel button",
    );
    const press = (user: string) =>
      slack.sendInteraction(
        url,
        slack.blockActions({ channel: "C0001", messageTs: root.ts, actionId: "tcx_cancel", user }),
      );

    const posts = slack.responseUrlPosts.length;
    expect((await press("U0002")).ok).toBe(true);
    const refusal = await waitUntil(() => slack.responseUrlPosts[posts], "the private refusal");
    expect(refusal.body).toMatchObject({
      response_type: "ephemeral",
      replace_original: false,
      text: REFUSED,
    });
    expect((await ledgerOfOnlyCall()).turn.status).toBe("running"); // nothing changed

    const pressed = Date.now();
    expect((await press("U0001")).ok).toBe(true);
    const canceled = await waitUntil(() => {
      const message = slack.message("C0001", root.ts);
      return message?.text.includes("Canceled by <@U0001>.") ? message : undefined;
    }, "the root saying it was canceled");
    expect(Date.now() - pressed).toBeLessThan(10_000);
    expect(JSON.stringify(canceled.blocks)).not.toContain("tcx_cancel");
    const { turn, entries } = await ledgerOfOnlyCall();
    expect(turn.status).toBe("canceled");
    expect(entries.map((e) => e.status)).toEqual(["unknown"]);
    h.fake.finishWaiting();
  });
});

describe("Discord", () => {
  it("Cancel on the reply: refused to someone else; the asker's aborts the call and says so", async () => {
    const handle = discord.slashCommand({
      name: "imagine",
      options: { prompt: "a very slow moon" },
      user: "alice",
    });
    await discord.waitFor(() => h.fake.requests.length === 1, 10_000, "the call to OpenAI");
    const reply = await handle.waitForOriginal((m) => JSON.stringify(m.components).includes('"tcx:'), 10_000);
    const customId =
      (reply.components[0] as { components: Array<{ custom_id: string }> }).components[0]?.custom_id ?? "";

    const stranger = discord.clickButton({ messageId: reply.id, customId, user: "bob" });
    expect((await stranger.waitForAck()).type).toBe(4);
    expect(stranger.original?.flags).toBe(MessageFlags.Ephemeral);
    expect(stranger.original?.content).toBe(REFUSED);
    expect((await ledgerOfOnlyCall()).turn.status).toBe("running"); // nothing changed

    const asker = discord.clickButton({ messageId: reply.id, customId, user: "alice" });
    expect((await asker.waitForAck()).type).toBe(6);
    const canceled = await handle.waitForOriginal(
      (m) => m.content.includes(`Canceled by <@${discord.users.alice?.id}>.`),
      10_000,
    );
    expect(canceled.components).toEqual([]);
    const { turn, entries } = await ledgerOfOnlyCall();
    expect(turn.status).toBe("canceled");
    expect(entries.map((e) => e.status)).toEqual(["unknown"]);
    h.fake.finishWaiting();
  });
});
