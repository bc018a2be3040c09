import { MessageFlags } from "discord.js";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_PARAMS, type Platform } from "../src/domain.ts";
import type { BudgetCap } from "../src/ports.ts";
import { estimateTurnUsd } from "../src/provider/pricing.ts";
import { checkParams } from "../src/request/checks.ts";
import { parseImagineText } from "../src/request/flags.ts";
import type { FakeDiscord } from "./fakes/discord-server.ts";
import type { FakeSlack } from "./fakes/slack-server.ts";
import { type BothPlatforms, startBothPlatforms } from "./support/both-platforms.ts";
import { showsResult } from "./support/discord-results.ts";
import type { EngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * BUDGET_* through both adapters: a submit that would take a cap past its limit is refused privately — which
 * cap, how much is used, what this one needs, when it resets — and nothing is recorded or drawn; an admin is
 * not limited. Caps here: one person $1.00 a day, one channel $1.50 a day, one workspace $2.00 a month.
 * `--quality high --ar 1:1` images are estimated at about $0.125 each, so `--n` sets what a request needs.
 */
const CAPS: BudgetCap[] = [
  { scope: "user", period: "day", limitUsd: 1 },
  { scope: "channel", period: "day", limitUsd: 1.5 },
  { scope: "workspace", period: "month", limitUsd: 2 },
];
const SLACK_ADMIN = "U0099";
const HIGH = "--quality high --ar 1:1";

let both: BothPlatforms;
let h: EngineHarness;
let slack: FakeSlack;
let url = "";
let discord: FakeDiscord;

beforeAll(async () => {
  both = await startBothPlatforms({
    discord: { users: ["alice", "bob", "carol", "dave", "erin"] },
    engine: (fake) => ({
      budgets: CAPS,
      unlimited: (platform, userId) =>
        (platform === "slack" && userId === SLACK_ADMIN) ||
        (platform === "discord" && userId === fake.users.erin?.id),
    }),
  });
  ({ h, slack, url, discord } = both);
  for (const id of ["C0003", "C0004", "C0005", "C0006"]) slack.addChannel({ id, name: id.toLowerCase() });
});
afterAll(() => both?.close());
beforeEach(() => {
  h.fake.reset();
});

/** What the engine estimates for this /imagine text, as the refusal shows it. */
function needs(text: string): string {
  const { prompt, params } = parseImagineText(text);
  const usd = estimateTurnUsd({
    params: checkParams({ ...DEFAULT_PARAMS, ...params }),
    promptChars: prompt.length,
    inputs: [],
    imageModel: "gpt-image-2",
    thinkModel: "gpt-5.5",
  });
  return `$${usd.toFixed(2)}`;
}

/** The exact refusal, with the time left until the reset as the one part that moves. */
function refusal(whose: string, used: string, limit: string, text: string, period: "day" | "month"): RegExp {
  const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\$]/g, "\\$&");
  const head =
    period === "day"
      ? `✖ That would go over ${whose} daily budget: ${used} of ${limit} is used today, and this needs about ${needs(text)}. It resets at midnight UTC, `
      : `✖ That would go over ${whose} monthly budget: ${used} of ${limit} is used this month, and this needs about ${needs(text)}. It resets on the 1st (UTC), `;
  return new RegExp(`^${literal(head)}(\\d+ days|(\\d+ h )?\\d+ min|\\d+ h) from now\\.$`);
}

/** What the ledger holds for a payer now: the amount a refusal says is used. */
async function used(platform: Platform, scope: "channel" | "workspace", id: string): Promise<string> {
  const report = await h.store.spendReport({
    platform,
    userId: "nobody",
    channelId: scope === "channel" ? id : null,
    workspaceId: scope === "workspace" ? id : null,
    admin: false,
  });
  const total = scope === "channel" ? report.channelToday : report.workspaceMonth;
  return `$${(total?.usedUsd ?? -1).toFixed(2)}`;
}

/** What a person was billed on a platform: the sum of their ledger rows, read straight from the table. */
async function paidBy(platform: Platform, userId: string): Promise<number> {
  const result = await h.database.db.execute<{ usd: string }>(
    sql`select coalesce(sum(cost_usd), 0)::text as usd from ledger where platform = ${platform} and user_id = ${userId}`,
  );
  return Number(result.rows[0]?.usd);
}

/** What the fake OpenAI was asked to draw for this /imagine text. */
const requestsFor = (text: string) =>
  h.fake.requests.filter((r) => r.body.prompt === parseImagineText(text).prompt);

const round = (n: number) => Math.round(n * 1e6) / 1e6;
const dollars = (n: number) => `$${n.toFixed(2)}`;

describe("Slack", () => {
  const roots = (channel: string, prompt: string) =>
    slack.messages(channel).filter((m) => m.user === slack.botUserId && m.text.includes(prompt));

  async function imagine(text: string, user: string, channel: string, team?: string) {
    const ack = await slack.sendSlashCommand(url, {
      text,
      channel_id: channel,
      user_id: user,
      ...(team ? { team_id: team } : {}),
    });
    expect(ack.ok).toBe(true);
    return ack;
  }

  async function drawn(text: string, user: string, channel: string, team?: string) {
    await imagine(text, user, channel, team);
    const prompt = parseImagineText(text).prompt;
    const root = await waitUntil(() => roots(channel, prompt)[0], `the image of "${prompt}"`);
    await waitUntil(() => slack.message(channel, root.ts)?.text.includes("Done"), `"${prompt}" done`, 20_000);
  }

  async function refused(text: string, user: string, channel: string, team?: string) {
    const posts = slack.responseUrlPosts.length;
    const ack = await imagine(text, user, channel, team);
    const post = await waitUntil(() => slack.responseUrlPosts[posts], "the private refusal");
    expect(post.url).toBe(ack.responseUrl);
    expect(post.body).toMatchObject({ response_type: "ephemeral" });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(roots(channel, parseImagineText(text).prompt)).toEqual([]);
    return (post.body as { text: string }).text;
  }

  it("one person's daily budget", async () => {
    const text = `nine posters ${HIGH} --n 9`;
    expect(await refused(text, "U0001", "C0001")).toMatch(refusal("your", "$0.00", "$1.00", text, "day"));
    expect(requestsFor(text)).toEqual([]);
  });

  it("a channel's daily budget counts everyone in it", async () => {
    await drawn(`seven kites ${HIGH} --n 7`, "U0003", "C0003");
    h.fake.reset();
    const text = `six kites ${HIGH} --n 6`;
    const spent = await used("slack", "channel", "C0003");
    expect(await refused(text, "U0004", "C0003")).toMatch(
      refusal("this channel's", spent, "$1.50", text, "day"),
    );
    expect(requestsFor(text)).toEqual([]);
  });

  it("a workspace's monthly budget counts every channel in it", async () => {
    await drawn(`seven boats ${HIGH} --n 7`, "U0005", "C0004", "T0002");
    await drawn(`seven cars ${HIGH} --n 7`, "U0006", "C0005", "T0002");
    h.fake.reset();
    const text = `three trains ${HIGH} --n 3`;
    const spent = await used("slack", "workspace", "T0002");
    expect(await refused(text, "U0007", "C0006", "T0002")).toMatch(
      refusal("this workspace's", spent, "$2.00", text, "month"),
    );
    expect(requestsFor(text)).toEqual([]);
  });

  it("an admin is not limited", async () => {
    await drawn(`nine admin posters ${HIGH} --n 9`, SLACK_ADMIN, "C0001");
    expect(h.fake.requests).toHaveLength(1);
  });

  it("/canvas usage answers privately: my spend, the channel's and the workspace's, against the caps", async () => {
    const ack = await slack.sendSlashCommand(url, {
      command: "/canvas",
      text: "usage",
      channel_id: "C0004",
      user_id: "U0005",
      team_id: "T0002",
    });
    const mine = await paidBy("slack", "U0005");
    const channel = mine; // U0005 is the only one who drew in C0004
    const workspace = round(mine + (await paidBy("slack", "U0006")));
    expect(ack.body).toMatchObject({ response_type: "ephemeral" });
    const lines = (ack.body as { text: string }).text.split("\n");
    expect(lines.slice(0, 4)).toEqual([
      "What threadcanvas has spent:",
      `• You today: ${dollars(mine)} of $1.00; this month: ${dollars(mine)}`,
      `• This channel today: ${dollars(channel)} of $1.50`,
      `• This workspace this month: ${dollars(workspace)} of $2.00`,
    ]);
    expect(lines[4]).toMatch(/^Days and months are UTC; today ends in .+\.$/);
    expect(lines).toHaveLength(5); // no admin lines
  });

  it("/canvas usage shows an admin the workspace's top people and channels", async () => {
    const ack = await slack.sendSlashCommand(url, {
      command: "/canvas",
      text: "usage",
      channel_id: "C0006",
      user_id: SLACK_ADMIN,
      team_id: "T0002",
    });
    const text = (ack.body as { text: string }).text;
    const [first, second] = [
      { id: "U0005", usd: await paidBy("slack", "U0005") },
      { id: "U0006", usd: await paidBy("slack", "U0006") },
    ].sort((a, b) => b.usd - a.usd || a.id.localeCompare(b.id));
    expect(text).toContain("You are an admin: no limit applies to you.");
    expect(text).toContain(
      `Top people this month: <@${first?.id}> ${dollars(first?.usd ?? 0)}, <@${second?.id}> ${dollars(second?.usd ?? 0)}`,
    );
    expect(text).toMatch(/Top channels this month: <#C000[45]> \$\d+\.\d\d, <#C000[45]> \$\d+\.\d\d$/);
  });

  it("/canvas with anything else explains itself, and is refused where the bot is not enabled", async () => {
    const ack = await slack.sendSlashCommand(url, {
      command: "/canvas",
      text: "bill me",
      channel_id: "C0001",
      user_id: "U0001",
    });
    expect((ack.body as { text: string }).text).toBe(
      '✖ Unknown subcommand "bill me".\n`/canvas usage`: what you, this channel and this workspace have spent, against the budgets.',
    );
  });
});

describe("Discord", () => {
  async function drawn(text: string, user: string, channel: string) {
    const handle = discord.slashCommand({ name: "imagine", options: { prompt: text }, user, channel });
    await handle.waitForOriginal((m) => showsResult(m), 20_000);
  }

  async function refused(text: string, user: string, channel: string) {
    const handle = discord.slashCommand({ name: "imagine", options: { prompt: text }, user, channel });
    const [note] = await handle.waitForFollowUps(1, 20_000);
    expect(note?.flags).toBe(MessageFlags.Ephemeral);
    expect(handle.original?.deleted).toBe(true);
    return note?.content ?? "";
  }

  it("one person's daily budget", async () => {
    const text = `nine lanterns ${HIGH} --n 9`;
    const channel = discord.channelId;
    expect(await refused(text, "alice", channel)).toMatch(refusal("your", "$0.00", "$1.00", text, "day"));
    expect(requestsFor(text)).toEqual([]);
  });

  let budgetsChannel = "";

  it("a channel's daily budget counts everyone in it", async () => {
    const channel = discord.addChannel("budgets").id;
    budgetsChannel = channel;
    await drawn(`seven lamps ${HIGH} --n 7`, "bob", channel);
    h.fake.reset();
    const text = `six lamps ${HIGH} --n 6`;
    const spent = await used("discord", "channel", channel);
    expect(await refused(text, "carol", channel)).toMatch(
      refusal("this channel's", spent, "$1.50", text, "day"),
    );
    expect(requestsFor(text)).toEqual([]);
  });

  it("a server's monthly budget counts every channel in it", async () => {
    await drawn(`seven bells ${HIGH} --n 7`, "dave", discord.addChannel("more").id);
    h.fake.reset();
    const text = `three bells ${HIGH} --n 3`;
    const spent = await used("discord", "workspace", discord.guildId);
    expect(await refused(text, "alice", discord.addChannel("last").id)).toMatch(
      refusal("this workspace's", spent, "$2.00", text, "month"),
    );
    expect(requestsFor(text)).toEqual([]);
  });

  it("an admin is not limited", async () => {
    await drawn(`nine admin lanterns ${HIGH} --n 9`, "erin", discord.channelId);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("/canvas usage answers privately, a thread counting as its channel", async () => {
    const bob = discord.users.bob?.id ?? "";
    const thread = discord.userThread({ name: "talk", channel: budgetsChannel, user: "bob" });
    const handle = discord.slashCommand({
      name: "canvas",
      subcommand: "usage",
      user: "bob",
      channel: thread.id,
    });
    const ack = await handle.waitForAck();
    expect(ack.type).toBe(4);
    expect(handle.original?.flags).toBe(MessageFlags.Ephemeral);
    const mine = await paidBy("discord", bob);
    expect(handle.original?.content.split("\n").slice(0, 3)).toEqual([
      "What threadcanvas has spent:",
      `• You today: ${dollars(mine)} of $1.00; this month: ${dollars(mine)}`,
      `• This channel today: ${dollars(mine)} of $1.50`,
    ]);
  });
});
