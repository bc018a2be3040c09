import type { Platform } from "./domain.ts";
import { AppError } from "./errors.ts";

/**
 * Where threadcanvas is enabled and who administers it: `SLACK_ALLOWED_TEAMS`, `SLACK_ALLOWED_CHANNELS`,
 * `DISCORD_ALLOWED_GUILDS`, `DISCORD_ALLOWED_CHANNELS` and `ADMIN_USERS`. A list left unset allows everything.
 * Adapters ask before anything is written: a request from elsewhere gets `notEnabled()` privately and records
 * nothing. Platform-neutral: a workspace is a Slack team or a Discord server, and a thread is judged by the
 * channel it is in.
 */

export interface AccessConfig {
  slack: { teams: readonly string[] | null; channels: readonly string[] | null };
  discord: { guilds: readonly string[] | null; channels: readonly string[] | null };
  /** `slack:<user id>`, `discord:<user id>`. */
  admins: readonly string[];
}

/** Where a request comes from. `channelId` is a thread's parent channel, not the thread. */
export interface Place {
  workspaceId: string;
  channelId: string;
}

const OPEN: AccessConfig = {
  slack: { teams: null, channels: null },
  discord: { guilds: null, channels: null },
  admins: [],
};

export class AccessPolicy {
  /** Every workspace and channel allowed, no admins: the default when nothing is configured. */
  static readonly open = new AccessPolicy(OPEN);

  readonly #workspaces: Partial<Record<Platform, ReadonlySet<string>>> = {};
  readonly #channels: Partial<Record<Platform, ReadonlySet<string>>> = {};
  readonly #admins: ReadonlySet<string>;

  constructor(config: AccessConfig) {
    if (config.slack.teams) this.#workspaces.slack = new Set(config.slack.teams);
    if (config.slack.channels) this.#channels.slack = new Set(config.slack.channels);
    if (config.discord.guilds) this.#workspaces.discord = new Set(config.discord.guilds);
    if (config.discord.channels) this.#channels.discord = new Set(config.discord.channels);
    this.#admins = new Set(config.admins);
  }

  /** Whether the bot serves this workspace (a Slack team, a Discord server) at all. */
  servesWorkspace(platform: Platform, workspaceId: string): boolean {
    return this.#workspaces[platform]?.has(workspaceId) ?? true;
  }

  /** Whether a list of workspaces restricts this platform (else it serves any it is added to). */
  restrictsWorkspaces(platform: Platform): boolean {
    return this.#workspaces[platform] !== undefined;
  }

  /** Whether a channel list restricts this platform (so an adapter must find a thread's parent channel). */
  restrictsChannels(platform: Platform): boolean {
    return this.#channels[platform] !== undefined;
  }

  /** Whether a request from this place may be served. */
  allows(platform: Platform, place: Place): boolean {
    return (
      this.servesWorkspace(platform, place.workspaceId) &&
      (this.#channels[platform]?.has(place.channelId) ?? true)
    );
  }

  isAdmin(platform: Platform, userId: string): boolean {
    return this.#admins.has(`${platform}:${userId}`);
  }
}

/** What a person hears from a team, server or channel where the bot is not enabled. */
export function notEnabled(): AppError {
  return new AppError("unauthorized_channel", "not an allowed workspace or channel", {
    userMessage: "threadcanvas is not enabled in this channel.",
  });
}
