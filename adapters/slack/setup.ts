import { pathToFileURL } from "node:url";
import manifest from "./manifest.json" with { type: "json" };

/**
 * What is registered with Slack: the app manifest (`manifest.json`, pasted into api.slack.com/apps), ready for
 * one deployment. `npm run slack:manifest -- https://canvas.example.com` prints it with the bot's public URL in
 * its three places; `--socket` prints it for Socket Mode (no public URL).
 */

export type SlackManifest = typeof manifest;

export interface ManifestOptions {
  /** Where the bot's HTTP server is reachable; `POST /slack/events` is appended. */
  publicUrl?: string;
  socketMode?: boolean;
}

export function slackManifest(options: ManifestOptions = {}): SlackManifest {
  const copy = structuredClone(manifest);
  if (options.socketMode) copy.settings.socket_mode_enabled = true;
  if (options.publicUrl) {
    const events = new URL("slack/events", `${options.publicUrl.replace(/\/*$/, "")}/`).toString();
    for (const command of copy.features.slash_commands) command.url = events;
    copy.settings.event_subscriptions.request_url = events;
    copy.settings.interactivity.request_url = events;
  }
  return copy;
}

function main(args: readonly string[]): void {
  const socketMode = args.includes("--socket");
  const publicUrl = args.find((arg) => !arg.startsWith("--"));
  if (!socketMode && (!publicUrl || !/^https:\/\//.test(publicUrl))) {
    process.stderr.write(
      "Usage: npm run slack:manifest -- https://your.public.host   (Slack calls POST /slack/events there)\n" +
        "       npm run slack:manifest -- --socket                  (Socket Mode: no public URL needed)\n",
    );
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(slackManifest({ publicUrl, socketMode }), null, 2)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
