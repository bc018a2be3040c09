import { ButtonStyle, ComponentType, escapeMarkdown } from "discord.js";
import { fileExtension, type ImageRecord, type OutputFormat, type Turn } from "../../src/domain.ts";
import { describeParams } from "../../src/request/flags.ts";
import type { ButtonAction } from "../shared/inbound.ts";
import {
  cancelable,
  failureReason,
  isolateBidi,
  LATE_NOTE,
  oneLine,
  type StatusLine,
  statusText,
  truncate,
} from "../shared/render.ts";

/**
 * Pure rendering for Discord: engine state in, message contents and components out. No I/O, so every shape here
 * is tested without a server. Buttons carry the image they act on in their `custom_id`, so they keep working
 * after a restart; the thread follows from the image (its `threadKey` in the store).
 */

// ---------------------------------------------------------------------------------------------------------
// custom_id
// ---------------------------------------------------------------------------------------------------------

const ACTION_CODES: Record<ButtonAction, string> = { undo: "u", variations: "v", regenerate: "r", use: "s" };
const CODE_ACTIONS = new Map(Object.entries(ACTION_CODES).map(([action, code]) => [code, action]));

/** Every custom_id this app makes starts with this (the version lets a later format coexist with old buttons). */
export const CUSTOM_ID_PREFIX = "tc1";
/** Discord's limit for custom_id. */
export const MAX_CUSTOM_ID = 100;

export interface ButtonTarget {
  action: ButtonAction;
  /** The image the button acts on (Undo: any image of the thread; the thread's head is undone). */
  imageId: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `tc1:<action>:<image>`. A thread key (up to ~70 characters) and a UUID (36) do not fit together in Discord's
 * 100 characters with room to spare, and the image alone is enough: the store knows its thread. Image ids are
 * UUIDs, written as 22 base64url characters; any other id is kept as is behind `=` (not a base64url character).
 */
export function encodeCustomId(target: ButtonTarget): string {
  const id = UUID.test(target.imageId)
    ? Buffer.from(target.imageId.replaceAll("-", ""), "hex").toString("base64url")
    : `=${target.imageId}`;
  const customId = `${CUSTOM_ID_PREFIX}:${ACTION_CODES[target.action]}:${id}`;
  if (customId.length > MAX_CUSTOM_ID || id.slice(1).includes(":"))
    throw new Error(`image id ${target.imageId} does not fit a custom_id`);
  return customId;
}

/** Null for anything this app did not make. */
export function decodeCustomId(customId: string): ButtonTarget | null {
  const [prefix, code, id, extra] = customId.split(":");
  if (prefix !== CUSTOM_ID_PREFIX || extra !== undefined || !id) return null;
  const action = CODE_ACTIONS.get(code ?? "") as ButtonAction | undefined;
  if (!action) return null;
  if (id.startsWith("=")) return id.length > 1 ? { action, imageId: id.slice(1) } : null;
  if (!/^[A-Za-z0-9_-]{22}$/.test(id)) return null;
  const hex = Buffer.from(id, "base64url").toString("hex");
  if (hex.length !== 32) return null;
  const imageId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { action, imageId };
}

/** A turn id as a message nonce (≤ 25 characters): Discord refuses a second message with it for a few minutes. */
export function turnNonce(turnId: string): string {
  return UUID.test(turnId)
    ? Buffer.from(turnId.replaceAll("-", ""), "hex").toString("base64url")
    : turnId.slice(0, 25);
}

/** Raw component JSON, as Discord returns it and as discord.js accepts it. */
export interface ButtonJson {
  type: ComponentType.Button;
  style: ButtonStyle;
  label: string;
  custom_id: string;
}
export interface ActionRowJson {
  type: ComponentType.ActionRow;
  components: ButtonJson[];
}

/**
 * The buttons under a result: Undo (when the image has a parent), Variations, Regenerate on the first image
 * (the one the next message edits), then "Use #n" for each image when there are several (rows of five).
 */
export function resultComponents(images: readonly ImageRecord[]): ActionRowJson[] {
  const head = images[0];
  if (!head) return [];
  const button = (label: string, action: ButtonAction, imageId: string, style = ButtonStyle.Secondary) => ({
    type: ComponentType.Button as const,
    style,
    label,
    custom_id: encodeCustomId({ action, imageId }),
  });
  const actions: ButtonJson[] = [];
  if (head.parentId) actions.push(button("Undo", "undo", head.id));
  actions.push(button("Variations", "variations", head.id), button("Regenerate", "regenerate", head.id));
  const rows: ActionRowJson[] = [{ type: ComponentType.ActionRow, components: actions }];
  if (images.length > 1) {
    const choices = images.map((image) =>
      button(`Use #${image.index + 1}`, "use", image.id, ButtonStyle.Primary),
    );
    for (let i = 0; i < choices.length; i += 5)
      rows.push({ type: ComponentType.ActionRow, components: choices.slice(i, i + 5) });
  }
  return rows;
}

/** "Draw it" / "Cancel" under "Draw it for about $X?": `tcq:c|d:<inbox id>:<asker>`. */
export function confirmComponents(entryId: number, userId: string): ActionRowJson[] {
  const button = (label: string, code: "c" | "d", style: ButtonStyle) => ({
    type: ComponentType.Button as const,
    style,
    label,
    custom_id: `tcq:${code}:${entryId}:${userId}`,
  });
  return [
    {
      type: ComponentType.ActionRow,
      components: [button("Draw it", "c", ButtonStyle.Primary), button("Cancel", "d", ButtonStyle.Secondary)],
    },
  ];
}

/** A confirm/decline button's answer, inbox id and asker; null when the custom id is not one. */
export function decodeConfirmId(
  customId: string,
): { answer: "confirm" | "decline"; entryId: number; userId: string } | null {
  const match = /^tcq:([cd]):(\d+):(\d+)$/.exec(customId);
  if (!match) return null;
  return {
    answer: match[1] === "c" ? "confirm" : "decline",
    entryId: Number(match[2]),
    userId: match[3] ?? "",
  };
}

/**
 * The image a message of ours shows, read back from its buttons: the one the action buttons act on (the first
 * image), else the first choice. Null when the message has no buttons of ours.
 */
export function imageIdFromComponents(components: readonly unknown[]): string | null {
  const targets = customIdsIn(components).flatMap((id) => decodeCustomId(id) ?? []);
  return (targets.find((t) => t.action !== "use") ?? targets[0])?.imageId ?? null;
}

/** Every custom_id in a message's components (raw JSON or discord.js objects), depth first. */
export function customIdsIn(components: readonly unknown[]): string[] {
  const ids: string[] = [];
  const walk = (node: unknown) => {
    if (!node || typeof node !== "object") return;
    const record = node as Record<string, unknown>;
    const data = (record.data as Record<string, unknown> | undefined) ?? record;
    const id = record.customId ?? data.custom_id;
    if (typeof id === "string") ids.push(id);
    for (const child of [record.components, data.components]) if (Array.isArray(child)) child.forEach(walk);
  };
  components.forEach(walk);
  return [...new Set(ids)];
}

// ---------------------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------------------

/** Discord's message limit. */
export const MAX_CONTENT = 2000;

/** One line describing what a turn asked for: `✏️ “make it blue”`, `🔀 Variations`, … */
export function describeTurn(turn: Pick<Turn, "kind" | "prompt" | "params">): string {
  // Masked links, headings and lists too: a prompt cannot become a link or restyle our message.
  const escaped = escapeMarkdown(oneLine(turn.prompt), {
    maskedLink: true,
    heading: true,
    bulletedList: true,
    numberedList: true,
  });
  const prompt = `“${isolateBidi(truncate(escaped, 300))}”`;
  const params = describeParams(turn.params);
  switch (turn.kind) {
    case "generate":
      return `🖼️ ${prompt}${params ? ` · ${params}` : ""}`;
    case "edit":
      return `✏️ ${prompt}`;
    case "variation":
      return "🔀 Variations";
    case "undo":
      return "↩️ Undo";
    case "select":
      return "👉 Continue from a chosen image";
  }
}

/** The Cancel button on a turn still queued or running (`tcx:<turn id>`); none once it is done. */
export function cancelComponents(turnId: string, status: StatusLine): ActionRowJson[] {
  if (!cancelable(status)) return [];
  return [
    {
      type: ComponentType.ActionRow,
      components: [
        {
          type: ComponentType.Button,
          style: ButtonStyle.Danger,
          label: "Cancel",
          custom_id: `tcx:${turnId}`,
        },
      ],
    },
  ];
}

/** A turn that is still queued or running: what was asked, by whom, and how it is going. */
export function progressContent(turn: Turn, status: StatusLine): string {
  return clamp(`${describeTurn(turn)} — <@${turn.userId}>\n${statusText(status)}`);
}

export interface ResultOptions {
  /** Images that were sent as a smaller copy to fit the server's upload limit (by index). */
  compressed?: ReadonlySet<number>;
  /** Where the next message goes to edit this result. */
  replyHint?: "thread" | "reply";
}

/** The content above a result's images: version, what was asked, how to continue, what it cost. */
export function resultContent(
  turn: Turn,
  images: readonly ImageRecord[],
  options: ResultOptions = {},
): string {
  const where = options.replyHint === "reply" ? "Reply to this message" : "Write in the thread";
  const next =
    images.length > 1
      ? `${images.length} images. ${where} to edit #1, or pick another.`
      : options.replyHint === "reply"
        ? `${where} to edit it.`
        : `${where} to edit it, or reply to any image to branch from it.`;
  const first = images[0];
  const facts = [
    first ? `${first.width}x${first.height}` : "",
    turn.params.quality !== "auto" ? turn.params.quality : "",
    turn.costUsd === null ? "" : `≈ $${turn.costUsd.toFixed(3)}`,
  ].filter(Boolean);
  const lines = [`**v${turn.seq}** · ${describeTurn(turn)} — <@${turn.userId}>`, next];
  if (facts.length > 0) lines.push(`-# ${facts.join(" · ")}`);
  if (options.compressed?.size) lines.push(`-# ${compressedNote(options.compressed, images.length)}`);
  return clamp(lines.join("\n"));
}

function compressedNote(indexes: ReadonlySet<number>, count: number): string {
  const which =
    count === 1
      ? "The image is"
      : `${[...indexes]
          .sort((a, b) => a - b)
          .map((i) => `#${i + 1}`)
          .join(", ")} ${indexes.size === 1 ? "is" : "are"}`;
  return `${which} a compressed copy that fits this server's upload limit; the original is kept and is what edits start from.`;
}

/** Undo and "use this one": where the next edit starts now. */
export function headMovedContent(turn: Turn, head: { seq: number; index: number } | null): string {
  const version = head
    ? `**v${head.seq}${head.index > 0 ? ` #${head.index + 1}` : ""}**`
    : "the earlier image";
  const what =
    turn.kind === "undo"
      ? `↩️ Undone — back to ${version}. The next message edits it.`
      : `👉 Using ${version} — the next message edits it.`;
  return clamp(`${what} <@${turn.userId}>`);
}

/** A closing message with the late note on top. */
export function withLateNote(content: string): string {
  return clamp(`-# ${LATE_NOTE}\n${content}`);
}

/** A failed turn, in plain words. */
export function failureContent(turn: Turn): string {
  return clamp(`✖ ${describeTurn(turn)} — <@${turn.userId}>\nThis did not work: ${failureReason(turn)}`);
}

/** When the interaction's reply can no longer be edited (15 minutes), the stale "thinking…" says where to look. */
export const STALE_REPLY_CONTENT =
  "⌛ This took longer than Discord lets me update this reply; the result is below.";

/** A thread name from the prompt: one line, at most 100 characters (code points), never empty. */
export function threadName(prompt: string): string {
  const name = oneLine(prompt).trim();
  const chars = [...name];
  if (chars.length === 0) return "image";
  return chars.length > 100 ? `${chars.slice(0, 99).join("")}…` : name;
}

export function previewFileName(turn: Pick<Turn, "seq">, preview: number, format: OutputFormat): string {
  return `v${turn.seq}-preview-${preview}.${fileExtension(format)}`;
}

const PERMISSION_NAMES: Record<string, string> = {
  ViewChannel: "View Channel",
  SendMessages: "Send Messages",
  SendMessagesInThreads: "Send Messages in Threads",
  CreatePublicThreads: "Create Public Threads",
  AttachFiles: "Attach Files",
  ReadMessageHistory: "Read Message History",
};

/** Why the bot cannot work in a channel, and what to do about it. */
export function missingPermissionsText(channelId: string, missing: readonly string[]): string {
  const names = missing.map((flag) => PERMISSION_NAMES[flag] ?? flag);
  const list = names.length > 0 ? names.join(", ") : "permissions I need there";
  return clamp(
    `I can't work in <#${channelId}>: I'm missing ${list}. ` +
      "Ask a server admin to give my role these permissions there, or use me in another channel.",
  );
}

function clamp(text: string): string {
  return truncate(text, MAX_CONTENT);
}
