import { describe, expect, it } from "vitest";
import { AccessPolicy, notEnabled } from "../src/access.ts";

const policy = new AccessPolicy({
  slack: { teams: ["T0001"], channels: null },
  discord: { guilds: ["1200000000000000001"], channels: ["1200000000000000002"] },
  admins: ["slack:U0001", "discord:1200000000000000009"],
});

describe("AccessPolicy", () => {
  it("serves every workspace and channel when nothing is listed", () => {
    const open = AccessPolicy.open;
    expect(open.allows("slack", { workspaceId: "T9", channelId: "C9" })).toBe(true);
    expect(open.servesWorkspace("discord", "1")).toBe(true);
    expect(open.restrictsWorkspaces("discord")).toBe(false);
    expect(open.restrictsChannels("slack")).toBe(false);
    expect(open.isAdmin("slack", "U0001")).toBe(false);
  });

  it("serves only the listed workspaces, and within them only the listed channels", () => {
    expect(policy.allows("slack", { workspaceId: "T0001", channelId: "C9" })).toBe(true);
    expect(policy.allows("slack", { workspaceId: "T0002", channelId: "C9" })).toBe(false);
    expect(
      policy.allows("discord", { workspaceId: "1200000000000000001", channelId: "1200000000000000002" }),
    ).toBe(true);
    expect(
      policy.allows("discord", { workspaceId: "1200000000000000001", channelId: "1200000000000000003" }),
    ).toBe(false);
    expect(
      policy.allows("discord", { workspaceId: "1200000000000000004", channelId: "1200000000000000002" }),
    ).toBe(false);
    expect(policy.restrictsWorkspaces("discord")).toBe(true);
    expect(policy.restrictsChannels("slack")).toBe(false);
  });

  it("knows admins by platform and user id", () => {
    expect(policy.isAdmin("slack", "U0001")).toBe(true);
    expect(policy.isAdmin("discord", "U0001")).toBe(false);
    expect(policy.isAdmin("discord", "1200000000000000009")).toBe(true);
  });

  it("says plainly where it is not enabled", () => {
    expect(notEnabled().userMessage).toBe("threadcanvas is not enabled in this channel.");
  });
});
