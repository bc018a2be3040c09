import type { BudgetCap, SpendTotal, UsageAnswer } from "../../src/ports.ts";
import { inWords, usd } from "../../src/words.ts";

/**
 * The answer to `/canvas usage` (Slack, Discord) and `/usage` (console), the same words everywhere: what the
 * person, the channel and the workspace spent against their caps, and for an admin the workspace's top payers.
 * Mentions are written `<@id>` and `<#id>`, which Slack and Discord both render as names.
 */
export function usageText(view: UsageAnswer, options: { plainIds?: boolean } = {}): string {
  const { report, caps } = view;
  const cap = (scope: BudgetCap["scope"]) => caps.find((c) => c.scope === scope);
  const lines = [
    "What threadcanvas has spent:",
    `• You today: ${against(report.userToday, cap("user"))}; this month: ${usd(report.userMonth.usedUsd)}`,
  ];
  if (report.channelToday)
    lines.push(`• This channel today: ${against(report.channelToday, cap("channel"))}`);
  if (report.workspaceMonth)
    lines.push(`• This workspace this month: ${against(report.workspaceMonth, cap("workspace"))}`);
  const held = Math.max(
    report.userToday.reservedUsd,
    report.channelToday?.reservedUsd ?? 0,
    report.workspaceMonth?.reservedUsd ?? 0,
  );
  if (held > 0) lines.push(`Included above: ${usd(held)} held for images still being drawn.`);
  lines.push(`Days and months are UTC; today ends in ${inWords(report.userToday.resetsInSeconds)}.`);
  if (view.admin) {
    lines.push("You are an admin: no limit applies to you.");
    const person = (id: string) => (options.plainIds ? id : `<@${id}>`);
    const channel = (id: string) => (options.plainIds ? id : `<#${id}>`);
    if (report.topUsers.length > 0)
      lines.push(
        `Top people this month: ${report.topUsers.map((u) => `${person(u.id)} ${usd(u.usd)}`).join(", ")}`,
      );
    if (report.topChannels.length > 0)
      lines.push(
        `Top channels this month: ${report.topChannels.map((c) => `${channel(c.id)} ${usd(c.usd)}`).join(", ")}`,
      );
  }
  return lines.join("\n");
}

/** "$0.42 of $5.00", or "$0.42 (no cap)". */
function against(total: SpendTotal, cap: BudgetCap | undefined): string {
  return cap ? `${usd(total.usedUsd)} of ${usd(cap.limitUsd)}` : `${usd(total.usedUsd)} (no cap)`;
}
