import {
  ActionRowBuilder,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  type ChatInputCommandInteraction,
  Client,
  type ClientEvents,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  type Interaction,
  type Message,
  MessageFlags,
  MessageType,
  ModalBuilder,
  PermissionFlagsBits,
  REST,
  Routes,
  SlashCommandBuilder,
  StringSelectMenuBuilder,
  type TextChannel,
  TextInputBuilder,
  TextInputStyle,
} from "discord.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeDiscord, startFakeDiscord } from "./fakes/discord-server.ts";
import { makePng } from "./fakes/images.ts";

/**
 * The fake Discord (test/fakes/discord-server.ts) driven by the real discord.js Client over REST and the gateway,
 * with the test playing the bot through plain discord.js calls. Everything stays on 127.0.0.1.
 */

let fake: FakeDiscord;
let client: Client;
let general: TextChannel;

const imagine = new SlashCommandBuilder()
  .setName("imagine")
  .setDescription("Make an image")
  .addStringOption((o) => o.setName("prompt").setDescription("What to draw").setRequired(true))
  .addStringOption((o) =>
    o
      .setName("size")
      .setDescription("Image size")
      .addChoices({ name: "square", value: "1024x1024" }, { name: "wide", value: "1536x1024" }),
  )
  .addAttachmentOption((o) => o.setName("image").setDescription("An image to edit"));

/** The next event of a kind that passes the filter. */
function next<E extends keyof ClientEvents>(
  event: E,
  filter: (...args: ClientEvents[E]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<ClientEvents[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, listener);
      reject(new Error(`no ${String(event)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (...args: ClientEvents[E]) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      client.off(event, listener);
      resolve(args);
    };
    client.on(event, listener);
  });
}

const nextInteraction = async (id: string) =>
  (await next(Events.InteractionCreate, (i: Interaction) => i.id === id))[0];
const nextCommand = async (id: string) => (await nextInteraction(id)) as ChatInputCommandInteraction;
const nextMessage = async (filter: (m: Message) => boolean) => (await next(Events.MessageCreate, filter))[0];

async function apiError(promise: Promise<unknown>): Promise<DiscordAPIError> {
  const error = await promise.then(
    () => expect.unreachable("expected a DiscordAPIError"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DiscordAPIError);
  return error as DiscordAPIError;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  fake = await startFakeDiscord({ heartbeatIntervalMs: 400 });
  client = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
    rest: { api: fake.apiUrl, offset: 0 },
  });
  const ready = next(Events.ClientReady);
  await client.login(fake.botToken);
  await ready;
  general = client.channels.cache.get(fake.channelId) as TextChannel;
});
afterAll(async () => {
  await client?.destroy();
  await fake?.close();
});

describe("login and the gateway", () => {
  it("identifies with the intents, gets READY and GUILD_CREATE, and caches the guild and channel", async () => {
    expect(client.user?.id).toBe(fake.botUser.id);
    expect(client.application?.id).toBe(fake.applicationId);
    const guild = client.guilds.cache.get(fake.guildId);
    expect(guild?.available).toBe(true);
    expect(general?.name).toBe("general");
    expect(general.permissionsFor(client.user?.id ?? "")?.has(PermissionFlagsBits.SendMessages)).toBe(true);

    expect(fake.gateway.identifies).toMatchObject([{ intents: 33281, shard: [0, 1], compress: false }]);
    const gatewayCall = fake.calls.find((c) => c.route === "GET /gateway/bot");
    expect(gatewayCall).toMatchObject({ auth: "bot", status: 200 });

    const application = await client.application?.fetch();
    expect(application?.id).toBe(fake.applicationId);

    // The fake answers heartbeats; discord.js measures its ping from the ACKs.
    await fake.waitFor(() => fake.gateway.heartbeats >= 1, 2000, "a heartbeat");
    await fake.waitFor(() => client.ws.ping >= 0, 1000, "a ping");
  });

  it("answers like Discord without a token and on unknown routes", async () => {
    const anonymous = await fetch(`${fake.apiUrl}/v10/users/@me`);
    expect([anonymous.status, await anonymous.json()]).toEqual([
      401,
      { message: "401: Unauthorized", code: 0 },
    ]);
    const unknown = await fetch(`${fake.apiUrl}/v10/nowhere`, {
      headers: { authorization: `Bot ${fake.botToken}` },
    });
    expect([unknown.status, await unknown.json()]).toEqual([404, { message: "404: Not Found", code: 0 }]);
    const wrongType = await fetch(`${fake.apiUrl}/v10/channels/${fake.channelId}/messages`, {
      method: "POST",
      headers: { authorization: `Bot ${fake.botToken}`, "content-type": "text/plain" },
      body: "hello",
    });
    expect(await wrongType.json()).toMatchObject({ code: 50109 });
  });
});

describe("commands", () => {
  it("registers global and guild commands and rejects invalid ones with 50035", async () => {
    const global = await client.application?.commands.set([imagine.toJSON()]);
    expect(global?.first()?.name).toBe("imagine");
    const guildCommands = await client.application?.commands.set(
      [new SlashCommandBuilder().setName("canvas").setDescription("Guild only").toJSON()],
      fake.guildId,
    );
    expect(guildCommands?.first()?.guildId).toBe(fake.guildId);
    expect(fake.commands().map((c) => c.name)).toEqual(["imagine"]);
    expect(fake.commands(fake.guildId).map((c) => c.name)).toEqual(["canvas"]);
    expect(fake.commands()[0]?.options).toHaveLength(3);

    // Re-registering keeps the command's id, as Discord does.
    const again = await client.application?.commands.set([imagine.toJSON()]);
    expect(again?.first()?.id).toBe(global?.first()?.id);

    const invalid = await apiError(
      client.application?.commands.set([
        { name: "Imagine Now", description: "x".repeat(101) },
        {
          name: "ok",
          description: "order",
          options: [
            { type: 3, name: "optional", description: "o" },
            { type: 3, name: "required", description: "r", required: true },
          ],
        },
      ]) ?? Promise.resolve(),
    );
    expect(invalid.code).toBe(50035);
    expect(invalid.status).toBe(400);
    expect(invalid.message).toContain("Command name is invalid");
    expect(invalid.message).toContain("Must be between 1 and 100 in length.");
    expect(invalid.message).toContain("Required options must be placed before non-required options");
    expect(fake.commands().map((c) => c.name)).toEqual(["imagine"]);
  });
});

describe("interactions", () => {
  it("defers, then edits the reply with a PNG: the fake holds the exact bytes and serves them", async () => {
    const input = await makePng(32, 32, "input");
    const handle = fake.slashCommand({
      name: "imagine",
      user: "alice",
      options: { prompt: "a cat", size: "1024x1024" },
      attachments: { image: { bytes: input, filename: "in.png" } },
    });
    const interaction = await nextCommand(handle.id);
    expect(interaction.commandName).toBe("imagine");
    expect(interaction.user.id).toBe(fake.users.alice?.id);
    expect(interaction.channelId).toBe(fake.channelId);
    expect(interaction.options.getString("prompt")).toBe("a cat");
    const attachment = interaction.options.getAttachment("image", true);
    expect(attachment).toMatchObject({
      name: "in.png",
      contentType: "image/png",
      size: input.length,
      width: 32,
    });

    // The bot downloads the user's attachment from the CDN, without auth.
    const download = await fetch(attachment.url);
    expect(download.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await download.arrayBuffer()).equals(input)).toBe(true);
    const tampered = await fetch(attachment.url.replace(/hm=[0-9a-f]+/, "hm=00"));
    expect(tampered.status).toBe(404);
    expect(fake.downloads.slice(-2).map((d) => d.status)).toEqual([200, 404]);

    await interaction.deferReply();
    expect(handle.ack).toMatchObject({ type: 5, ephemeral: false });
    expect(handle.ack?.latencyMs).toBeLessThan(3000);
    const output = await makePng(64, 48, "output");
    const reply = await interaction.editReply({
      content: "a cat",
      files: [new AttachmentBuilder(output, { name: "out.png" })],
    });
    expect(reply.attachments.first()).toMatchObject({
      name: "out.png",
      size: output.length,
      contentType: "image/png",
    });

    const [thinking, done] = handle.edits;
    expect(thinking?.flags).toBe(MessageFlags.Loading);
    expect(done?.content).toBe("a cat");
    expect(done?.attachments[0]?.bytes.equals(output)).toBe(true);
    const served = await fetch(String(reply.attachments.first()?.url));
    expect(Buffer.from(await served.arrayBuffer()).equals(output)).toBe(true);

    const fetched = await interaction.fetchReply();
    expect(fetched.id).toBe(handle.original?.id);
    await interaction.followUp({ content: "only you", flags: MessageFlags.Ephemeral });
    expect(handle.followUps).toMatchObject([{ content: "only you", flags: MessageFlags.Ephemeral }]);
    expect(handle.rejected).toEqual([]);
  });

  it("refuses a first response after the deadline with 10062, and a second one with 40060", async () => {
    fake.setAckDeadline(200);
    try {
      const late = fake.slashCommand({ name: "imagine", options: { prompt: "late" } });
      const interaction = await nextCommand(late.id);
      await sleep(300);
      const error = await apiError(interaction.deferReply());
      expect([error.status, error.code, error.message]).toEqual([404, 10062, "Unknown interaction"]);
      expect(late.ack).toBeNull();
      expect(late.rejected).toMatchObject([{ type: 5, code: 10062 }]);
    } finally {
      fake.setAckDeadline(3000);
    }

    const twice = fake.slashCommand({ name: "imagine", options: { prompt: "twice" } });
    const interaction = await nextCommand(twice.id);
    const png = await makePng(8, 8, "first");
    const response = await interaction.reply({
      content: "first",
      files: [new AttachmentBuilder(png, { name: "first.png" })],
      withResponse: true,
    });
    expect(response.resource?.message?.id).toBe(twice.original?.id);
    expect(twice.original?.attachments[0]?.bytes.equals(png)).toBe(true);
    // discord.js refuses a second reply itself; a raw callback reaches Discord, which says 40060.
    await expect(interaction.reply({ content: "second" })).rejects.toThrow(/already been sent or deferred/);
    const error = await apiError(
      client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        body: { type: 4, data: { content: "second" } },
        auth: false,
      }),
    );
    expect([error.status, error.code]).toEqual([400, 40060]);
    expect(twice.original?.content).toBe("first");
  });

  it("handles button clicks with deferUpdate + editReply and with update", async () => {
    const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
      new ButtonBuilder().setCustomId("again:1").setLabel("Again").setStyle(ButtonStyle.Primary),
    );
    const posted = await general.send({ content: "v1", components: [row] });

    const first = fake.clickButton({ messageId: posted.id, customId: "again:1", user: "bob" });
    const click = await nextInteraction(first.id);
    expect(click.isButton() && click.customId).toBe("again:1");
    if (!click.isButton()) return;
    expect(click.message.id).toBe(posted.id);
    await click.deferUpdate();
    await click.editReply({ content: "v2" });
    expect(first.ack?.type).toBe(6);
    expect(fake.message(posted.id)?.content).toBe("v2");

    const second = fake.clickButton({ messageId: posted.id, customId: "again:1" });
    const update = await nextInteraction(second.id);
    if (!update.isButton()) throw new Error("expected a button");
    await update.update({ content: "v3", components: [] });
    expect(second.ack?.type).toBe(7);
    expect(fake.message(posted.id)?.history.map((h) => h.content)).toEqual(["v1", "v2", "v3"]);
    expect(() => fake.clickButton({ messageId: posted.id, customId: "again:1" })).toThrow(/no component/);
  });

  it("takes ephemeral replies, modals, select menus, deleted replies and wrong response types", async () => {
    const secret = fake.slashCommand({ name: "imagine", options: { prompt: "secret" }, user: "bob" });
    const first = await nextCommand(secret.id);
    const select = new ActionRowBuilder<StringSelectMenuBuilder>().addComponents(
      new StringSelectMenuBuilder()
        .setCustomId("size")
        .addOptions({ label: "Square", value: "1024x1024" }, { label: "Wide", value: "1536x1024" }),
    );
    await first.reply({ content: "pick a size", components: [select], flags: MessageFlags.Ephemeral });
    expect(secret.ack).toMatchObject({ type: 4, ephemeral: true });
    // Ephemeral messages are not in the channel: only the interaction's webhook reaches them.
    const hiddenId = String(secret.original?.id);
    expect((await apiError(general.messages.fetch({ message: hiddenId, force: true }))).code).toBe(10008);
    expect(() => fake.selectMenu({ messageId: hiddenId, customId: "size", values: ["x"] })).toThrow(
      /cannot see the ephemeral message/,
    );
    const picked = fake.selectMenu({
      messageId: hiddenId,
      customId: "size",
      values: ["1536x1024"],
      user: "bob",
    });
    const choice = await nextInteraction(picked.id);
    if (!choice.isStringSelectMenu()) throw new Error("expected a select menu");
    expect(choice.values).toEqual(["1536x1024"]);
    await choice.showModal(
      new ModalBuilder()
        .setCustomId("prompt")
        .setTitle("Describe it")
        .addComponents(
          new ActionRowBuilder<TextInputBuilder>().addComponents(
            new TextInputBuilder().setCustomId("text").setLabel("Prompt").setStyle(TextInputStyle.Short),
          ),
        ),
    );
    expect(picked.ack?.type).toBe(9);

    const gone = fake.slashCommand({ name: "imagine", options: { prompt: "gone" } });
    const second = await nextCommand(gone.id);
    // A command cannot answer with a component-only response type.
    const wrong = await apiError(
      client.rest.post(Routes.interactionCallback(second.id, second.token), {
        body: { type: 6 },
        auth: false,
      }),
    );
    expect(wrong.code).toBe(50035);
    expect(gone.rejected).toMatchObject([{ type: 6, code: 50035 }]);
    await second.reply("short-lived");
    await second.deleteReply();
    expect(fake.messages().some((m) => m.id === gone.original?.id)).toBe(false);

    const mine = await general.send("question?");
    const answer = nextMessage((m) => m.reference?.messageId === mine.id);
    fake.userMessage({ content: "answer", messageReference: mine.id });
    expect((await answer).type).toBe(MessageType.Reply);
    expect((await client.channels.fetch(fake.channelId, { force: true }))?.id).toBe(fake.channelId);
  });

  it("rejects webhook calls once the interaction token is 15 minutes old", async () => {
    const handle = fake.slashCommand({ name: "imagine", options: { prompt: "slow" } });
    const interaction = await nextCommand(handle.id);
    await interaction.deferReply();
    fake.advanceTime(15 * 60 * 1000 + 1000);
    try {
      const error = await apiError(interaction.editReply({ content: "too late" }));
      expect([error.status, error.code]).toEqual([401, 50027]);
      // The 401 came from an unauthenticated route, so discord.js keeps its token.
      await expect(general.send("still logged in")).resolves.toBeDefined();
    } finally {
      fake.advanceTime(-(15 * 60 * 1000 + 1000));
    }
  });
});

describe("messages and threads", () => {
  it("starts a thread from a message, posts in it, and delivers people's messages from it", async () => {
    const root = await general.send("imagining a cat");
    const threadCreated = next(Events.ThreadCreate);
    const thread = await root.startThread({ name: "a cat" });
    expect(thread.id).toBe(root.id);
    expect((await threadCreated)[0].id).toBe(thread.id);
    expect(fake.threads(fake.channelId)).toMatchObject([{ id: thread.id, name: "a cat", type: 11 }]);

    const echo = nextMessage((m) => m.channelId === thread.id && m.author.id === fake.botUser.id);
    await thread.send({ files: [new AttachmentBuilder(await makePng(16, 16, "t"), { name: "v1.png" })] });
    // Discord echoes the bot's own messages: a bot must ignore them itself.
    expect((await echo).author.bot).toBe(true);

    const reply = nextMessage((m) => m.channelId === thread.id && !m.author.bot);
    const photo = await makePng(24, 24, "photo");
    const sent = fake.userMessage({
      channel: thread.id,
      content: "make it blue",
      user: "alice",
      attachments: [{ bytes: photo, filename: "photo.png" }],
    });
    const received = await reply;
    expect([received.id, received.content, received.channel.isThread()]).toEqual([
      sent.id,
      "make it blue",
      true,
    ]);
    const download = await fetch(String(received.attachments.first()?.url));
    expect(Buffer.from(await download.arrayBuffer()).equals(photo)).toBe(true);

    const answer = await received.reply("on it");
    expect(fake.message(answer.id)).toMatchObject({ type: 19, messageReference: { message_id: sent.id } });
    expect((await thread.messages.fetch({ message: sent.id, force: true })).content).toBe("make it blue");
    expect(fake.messages(thread.id).map((m) => m.content)).toEqual(["", "make it blue", "on it"]);

    const name = "x".repeat(101);
    expect((await apiError(general.threads.create({ name }))).code).toBe(50035);
    const loose = await general.threads.create({ name: "no starter" });
    expect(fake.channel(loose.id)).toMatchObject({ type: 11, parentId: fake.channelId });
  });

  it("drops messages from a thread discord.js never heard of (no THREAD_CREATE)", async () => {
    const hidden = fake.userThread({ name: "hidden", user: "bob", announce: false });
    const seen: string[] = [];
    const listener = (m: Message) => void seen.push(m.content);
    client.on(Events.MessageCreate, listener);
    try {
      fake.userMessage({ channel: hidden.id, content: "lost", user: "bob" });
      const marker = nextMessage((m) => m.content === "marker");
      fake.userMessage({ content: "marker" });
      await marker;
      expect(seen).toEqual(["marker"]);
    } finally {
      client.off(Events.MessageCreate, listener);
    }
  });

  it("refuses files over the guild's upload limit with 413 / 40005", async () => {
    fake.setAttachmentSizeLimit(1024);
    try {
      const error = await apiError(
        general.send({ files: [new AttachmentBuilder(Buffer.alloc(2048, 1), { name: "big.bin" })] }),
      );
      expect([error.status, error.code, error.message]).toEqual([413, 40005, "Request entity too large"]);
    } finally {
      fake.setAttachmentSizeLimit(10 * 1024 * 1024);
    }
  });

  it("rate-limits on demand: discord.js waits out Retry-After and retries", async () => {
    fake.failNext("POST /channels/{channel}/messages", { rateLimited: true, retryAfterSeconds: 0.05 });
    await expect(general.send("patient")).resolves.toMatchObject({ content: "patient" });
    const posts = fake.calls.filter((c) => c.route === "POST /channels/{channel}/messages").slice(-2);
    expect(posts.map((c) => c.status)).toEqual([429, 200]);
  });

  it("refuses posts where the bot may not send (50013) or see (50001)", async () => {
    const created = next(Events.ChannelCreate);
    const locked = fake.addChannel("locked");
    const channel = (await created)[0] as TextChannel;
    expect(channel.id).toBe(locked.id);

    const updated = next(Events.ChannelUpdate);
    fake.forbidChannel(locked.id);
    await updated;
    expect(channel.permissionsFor(client.user?.id ?? "")?.has(PermissionFlagsBits.SendMessages)).toBe(false);
    const denied = await apiError(channel.send("hello"));
    expect([denied.status, denied.code, denied.message]).toEqual([403, 50013, "Missing Permissions"]);

    fake.forbidChannel(locked.id, "view");
    expect((await apiError(channel.send("hello"))).code).toBe(50001);

    fake.allowChannel(locked.id);
    await expect(channel.send("hello")).resolves.toMatchObject({ content: "hello" });
  });
});

/** A new text channel the client has cached: its own rate-limit buckets, its own nonces. */
async function newChannel(name: string): Promise<TextChannel> {
  const created = next(Events.ChannelCreate);
  const record = fake.addChannel(name);
  const [channel] = await created;
  expect(channel.id).toBe(record.id);
  return channel as TextChannel;
}

const CREATE = "POST /channels/{channel}/messages";
const creates = (channelId: string) =>
  fake.calls.filter((c) => c.route === CREATE && c.path === `/channels/${channelId}/messages`);

/** discord.js's REST client on its own, with a short timeout, for calls that hang. */
function impatientRest(options: { timeout: number; retries: number }): REST {
  return new REST({ api: fake.apiUrl, offset: 0, ...options }).setToken(fake.botToken);
}

/** The fields a 50035 Invalid Form Body names. */
const fieldsIn = (error: DiscordAPIError) =>
  Object.keys(("errors" in error.rawError ? error.rawError.errors : undefined) ?? {});

describe("nonces", () => {
  it("with enforce_nonce, a repeated nonce gets the first message back and creates nothing", async () => {
    const channel = await newChannel("nonces");
    const first = await channel.send({ content: "first", nonce: "turn-1", enforceNonce: true });
    expect(first.nonce).toBe("turn-1");
    const again = await channel.send({ content: "second", nonce: "turn-1", enforceNonce: true });
    expect([again.id, again.content]).toEqual([first.id, "first"]);
    expect(fake.messages(channel.id).map((m) => m.content)).toEqual(["first"]);

    // Without enforce_nonce the same nonce makes a new message, as does the same nonce in another channel.
    const loose = await channel.send({ content: "loose", nonce: "turn-1" });
    expect(loose.id).not.toBe(first.id);
    const other = await newChannel("nonces-too");
    const elsewhere = await other.send({ content: "elsewhere", nonce: "turn-1", enforceNonce: true });
    expect(elsewhere.id).not.toBe(first.id);

    // An integer nonce is a nonce too.
    const numbered = await other.send({ content: "n", nonce: 4242, enforceNonce: true });
    expect((await other.send({ content: "n2", nonce: 4242, enforceNonce: true })).id).toBe(numbered.id);

    // "The past few minutes" (5 in the fake, on its clock): later, the nonce is free again.
    fake.advanceTime(5 * 60 * 1000 + 1000);
    const later = await channel.send({ content: "later", nonce: "turn-1", enforceNonce: true });
    expect(later.id).not.toBe(first.id);
    expect(fake.messages(channel.id).map((m) => m.content)).toEqual(["first", "loose", "later"]);
  });

  it("refuses nonces Discord refuses: over 25 characters, not a string or an integer (50035)", async () => {
    const channel = await newChannel("nonce-rules");
    const tooLong = await apiError(channel.send({ content: "x", nonce: "n".repeat(26), enforceNonce: true }));
    expect([tooLong.code, fieldsIn(tooLong)]).toEqual([50035, ["nonce"]]);
    // discord.js itself refuses these, so they go through its REST client.
    const post = (body: Record<string, unknown>) =>
      client.rest.post(Routes.channelMessages(channel.id), { body: { content: "x", ...body } });
    for (const nonce of [1.5, true]) expect((await apiError(post({ nonce }))).code).toBe(50035);
    const enforce = await apiError(post({ nonce: "ok", enforce_nonce: "yes" }));
    expect(fieldsIn(enforce)).toEqual(["enforce_nonce"]);
    await expect(post({ nonce: "n".repeat(25), enforce_nonce: true })).resolves.toMatchObject({
      nonce: "n".repeat(25),
    });
  });
});

describe("rate limits", () => {
  it("answers like Discord: bucket headers on every answer, then 429 with Retry-After", async () => {
    const channel = await newChannel("headers");
    const post = (channelId: string) =>
      fetch(`${fake.apiUrl}/v10/channels/${channelId}/messages`, {
        method: "POST",
        headers: { authorization: `Bot ${fake.botToken}`, "content-type": "application/json" },
        body: JSON.stringify({ content: "hi" }),
      });
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await post(channel.id));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(answers.map((r) => r.headers.get("x-ratelimit-remaining"))).toEqual([
      "4",
      "3",
      "2",
      "1",
      "0",
      "0",
    ]);
    const bucket = answers[0]?.headers.get("x-ratelimit-bucket");
    expect(bucket).toMatch(/^[0-9a-f]{32}$/);
    for (const answer of answers) {
      expect(answer.headers.get("x-ratelimit-limit")).toBe("5");
      expect(answer.headers.get("x-ratelimit-bucket")).toBe(bucket);
      expect(Number(answer.headers.get("x-ratelimit-reset-after"))).toBeLessThanOrEqual(5);
    }
    const limited = answers[5];
    expect(limited?.headers.get("x-ratelimit-scope")).toBe("user");
    expect(Number(limited?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await limited?.json()) as { retry_after: number };
    expect(body).toMatchObject({ message: "You are being rate limited.", global: false });
    expect(body.retry_after).toBeGreaterThan(0);
    expect(fake.messages(channel.id)).toHaveLength(5);
    expect(creates(channel.id).at(-1)?.rateLimit).toMatchObject({ bucket, limit: 5, limited: "user" });

    // Each channel has its own count; routes without a bucket carry no headers.
    expect((await post(fake.channelId)).status).toBe(200);
    const me = await fetch(`${fake.apiUrl}/v10/users/@me`, {
      headers: { authorization: `Bot ${fake.botToken}` },
    });
    expect(me.headers.get("x-ratelimit-bucket")).toBeNull();
  });

  it("discord.js waits a bucket out: a burst of sends all arrive, never more than the limit per window", async () => {
    const limit = 3;
    const windowMs = 1000;
    fake.setRateLimits({ buckets: [{ routes: [CREATE], per: "channel", limit, windowMs }] });
    try {
      const channel = await newChannel("burst");
      const sent = await Promise.all(Array.from({ length: 8 }, (_, i) => channel.send(`burst ${i}`)));
      expect(new Set(sent.map((m) => m.id)).size).toBe(8);
      expect(fake.messages(channel.id)).toHaveLength(8);

      // The fake let at most `limit` through per window; whatever it refused (429), discord.js sent again.
      const calls = creates(channel.id);
      const admitted = calls.filter((c) => c.status === 200);
      expect(admitted).toHaveLength(8);
      expect(calls.filter((c) => c.status === 429).every((c) => c.rateLimit?.limited === "user")).toBe(true);
      // Each window opens with `limit - 1` left: 8 sends need 3 windows, so the last came 2 windows after the first.
      const windows = admitted.filter((c) => c.rateLimit?.remaining === limit - 1);
      expect(windows.length).toBeGreaterThanOrEqual(Math.ceil(8 / limit));
      const span = (admitted.at(-1)?.at ?? 0) - (admitted[0]?.at ?? 0);
      expect(span).toBeGreaterThanOrEqual(2 * windowMs - 100);
    } finally {
      fake.setRateLimits({});
    }
  });

  it("discord.js waits out the global limit after a 429 with X-RateLimit-Global", async () => {
    fake.setRateLimits({ buckets: [], global: { limit: 4, windowMs: 1000 } });
    try {
      const before = fake.calls.length;
      const users = await Promise.all(
        Array.from({ length: 7 }, () => client.rest.get(Routes.user()) as Promise<{ id: string }>),
      );
      expect(users.every((u) => u.id === fake.botUser.id)).toBe(true);
      const calls = fake.calls.slice(before).filter((c) => c.route === "GET /users/@me");
      expect(calls.filter((c) => c.status === 200)).toHaveLength(7);
      const refused = calls.filter((c) => c.status === 429);
      expect(refused.length).toBeGreaterThan(0);
      expect(refused.every((c) => c.rateLimit?.limited === "global")).toBe(true);

      // Interaction callbacks carry no bot token: the global limit does not bind them.
      const handle = fake.slashCommand({ name: "imagine", options: { prompt: "x" } });
      const interaction = await nextCommand(handle.id);
      const me = () =>
        fetch(`${fake.apiUrl}/v10/users/@me`, { headers: { authorization: `Bot ${fake.botToken}` } });
      let last = await me();
      for (let i = 0; i < 5 && last.status === 200; i++) last = await me();
      expect([last.status, last.headers.get("x-ratelimit-global")]).toEqual([429, "true"]);
      expect(await last.json()).toMatchObject({ global: true });
      await interaction.deferReply();
      expect((await handle.waitForAck()).type).toBe(5);
      expect(fake.calls.findLast((c) => c.route?.endsWith("/callback"))).toMatchObject({ status: 204 });
    } finally {
      fake.setRateLimits({});
    }
  });

  it("can be turned off", async () => {
    fake.setRateLimits(false);
    try {
      const channel = await newChannel("unlimited");
      const started = Date.now();
      await Promise.all(Array.from({ length: 8 }, (_, i) => channel.send(`free ${i}`)));
      expect(Date.now() - started).toBeLessThan(2000);
      expect(creates(channel.id).every((c) => c.status === 200 && c.rateLimit === undefined)).toBe(true);
    } finally {
      fake.setRateLimits({});
    }
  });
});

describe("hung calls", () => {
  it("never answers a hung call: discord.js gives up after its timeout, and nothing was created", async () => {
    const rest = impatientRest({ timeout: 200, retries: 0 });
    fake.failNext(CREATE, { hang: true });
    const started = Date.now();
    const error = await rest
      .post(Routes.channelMessages(fake.channelId), { body: { content: "lost" } })
      .catch((e: unknown) => e);
    expect((error as Error).name).toBe("AbortError");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(fake.calls.at(-1)).toMatchObject({ route: CREATE, status: 0, hung: { processed: false } });
    expect(fake.messages().some((m) => m.content === "lost")).toBe(false);
    await fake.waitFor(() => fake.hungRequests === 0, 2000, "the client to hang up");
  });

  it("with processed, creates the message and then hangs: a retry makes it twice unless enforce_nonce", async () => {
    const channel = await newChannel("retries");
    const rest = impatientRest({ timeout: 200, retries: 1 });
    const send = (body: Record<string, unknown>) =>
      rest.post(Routes.channelMessages(channel.id), { body }) as Promise<{ id: string }>;

    fake.failNext(CREATE, { hang: true, processed: true });
    await send({ content: "twice" });
    expect(fake.messages(channel.id).map((m) => m.content)).toEqual(["twice", "twice"]);

    fake.failNext(CREATE, { hang: true, processed: true });
    const once = await send({ content: "once", nonce: "turn-7", enforce_nonce: true });
    expect(fake.messages(channel.id).map((m) => m.content)).toEqual(["twice", "twice", "once"]);
    const [hung, retry] = creates(channel.id).slice(-2);
    expect(hung).toMatchObject({ status: 200, hung: { processed: true } });
    expect(retry).toMatchObject({ status: 200 });
    expect(retry?.hung).toBeUndefined();
    expect(fake.message(once.id)?.content).toBe("once");
  });

  it("closes promptly with a request still hanging", async () => {
    const other = await startFakeDiscord();
    other.failNext("GET /users/@me", { hang: true });
    const pending = fetch(`${other.apiUrl}/v10/users/@me`, {
      headers: { authorization: `Bot ${other.botToken}` },
    });
    await other.waitFor(() => other.hungRequests === 1, 2000, "the hung request");
    const started = Date.now();
    await other.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(pending).rejects.toThrow();
  });
});

describe("intents", () => {
  it("empties people's message content for a bot without MessageContent, unless it is mentioned", async () => {
    const plain = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages],
      rest: { api: fake.apiUrl, offset: 0 },
    });
    try {
      const ready = new Promise((resolve) => plain.once(Events.ClientReady, resolve));
      await plain.login(fake.botToken);
      await ready;
      const seen: string[] = [];
      plain.on(Events.MessageCreate, (m) => void seen.push(m.content));
      const mention = `<@${fake.botUser.id}> draw a dog`;
      fake.userMessage({ content: "draw a cat" });
      fake.userMessage({ content: mention });
      await fake.waitFor(() => seen.length === 2, 3000, "two messages");
      expect(seen).toEqual(["", mention]);
    } finally {
      await plain.destroy();
    }
    expect(fake.gateway.identifies.at(-1)?.intents).toBe(
      GatewayIntentBits.Guilds | GatewayIntentBits.GuildMessages,
    );
  });

  it("closes with 4014 when the app lacks a privileged intent", async () => {
    const strict = await startFakeDiscord({ privilegedIntents: 0 });
    const bot = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.MessageContent],
      rest: { api: strict.apiUrl, offset: 0 },
    });
    try {
      await expect(bot.login(strict.botToken)).rejects.toThrow(/disallowed intents/i);
      expect(strict.gateway.identifies).toMatchObject([{ refused: 4014 }]);
    } finally {
      await bot.destroy();
      await strict.close();
    }
  });
});

describe("reconnects", () => {
  it("resumes after op 7 RECONNECT and receives the dispatch sent while it was away", async () => {
    const resumesBefore = fake.gateway.resumes.length;
    const resumed = next(Events.ShardResume);
    fake.gateway.requestReconnect();
    await fake.waitFor(() => fake.gateway.connections === 0, 3000, "the client to close");
    const arrived = nextMessage((m) => m.content === "sent while away");
    fake.userMessage({ content: "sent while away" });
    await resumed;
    expect((await arrived).content).toBe("sent while away");
    expect(fake.gateway.resumes.slice(resumesBefore)).toMatchObject([{ replayed: 1 }]);
    expect(fake.gateway.closes.at(-1)).toMatchObject({ code: 4200, by: "client" });
    expect(fake.gateway.identifies.filter((i) => !i.refused)).toHaveLength(2);
  });

  it("resumes on the same connection after a resumable INVALID_SESSION", async () => {
    const resumed = next(Events.ShardResume);
    fake.gateway.invalidateSession(true);
    await resumed;
    const arrived = nextMessage((m) => m.content === "after op 9");
    fake.userMessage({ content: "after op 9" });
    expect((await arrived).content).toBe("after op 9");
  });

  it("resumes after the connection drops without a close frame", async () => {
    const resumed = next(Events.ShardResume);
    fake.gateway.dropConnections();
    const arrived = nextMessage((m) => m.content === "after the drop");
    fake.userMessage({ content: "after the drop" });
    await resumed;
    expect((await arrived).content).toBe("after the drop");
    expect(fake.gateway.resumes.at(-1)).toMatchObject({ replayed: 1 });
  });
});

describe("the gateway protocol, spoken by hand", () => {
  /** A raw connection (Node's WebSocket) that collects payloads and the close code. */
  async function connect(query = "?v=10&encoding=json") {
    const ws = new WebSocket(`${fake.gateway.url}/${query}`);
    const payloads: Array<{ op: number; d: unknown }> = [];
    const closed = new Promise<number>((resolve) => ws.addEventListener("close", (e) => resolve(e.code)));
    ws.addEventListener("message", (e) => void payloads.push(JSON.parse(String(e.data))));
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve);
      ws.addEventListener("error", reject);
    });
    /** The first payload with this op, now or when it arrives. */
    const payload = (op: number) =>
      new Promise<{ op: number; d: unknown }>((resolve, reject) => {
        const found = payloads.find((p) => p.op === op);
        if (found) return resolve(found);
        const timer = setTimeout(() => reject(new Error(`no op ${op}`)), 2000);
        ws.addEventListener("message", function onMessage(e) {
          const data = JSON.parse(String(e.data));
          if (data.op !== op) return;
          clearTimeout(timer);
          ws.removeEventListener("message", onMessage);
          resolve(data);
        });
      });
    return { ws, payloads, closed, payload };
  }

  it("says HELLO, refuses an unknown session with op 9, and closes with Discord's codes", async () => {
    const first = await connect();
    expect(await first.payload(10)).toMatchObject({ d: { heartbeat_interval: 400 } });
    first.ws.send(JSON.stringify({ op: 1, d: null }));
    expect(await first.payload(11)).toBeDefined();
    first.ws.send(JSON.stringify({ op: 6, d: { token: fake.botToken, session_id: "gone", seq: 3 } }));
    expect(await first.payload(9)).toMatchObject({ d: false });
    first.ws.send(
      JSON.stringify({
        op: 2,
        d: { token: "wrong", intents: 1, properties: { os: "x", browser: "x", device: "x" } },
      }),
    );
    expect(await first.closed).toBe(4004);

    const early = await connect();
    early.ws.send(JSON.stringify({ op: 3, d: { status: "online" } }));
    expect(await early.closed).toBe(4003);

    const garbled = await connect();
    garbled.ws.send("{not json");
    expect(await garbled.closed).toBe(4002);

    const oldVersion = await connect("?v=9&encoding=json");
    expect(await oldVersion.closed).toBe(4012);
  });
});
