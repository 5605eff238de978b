// Builds what the browser tests serve: the library (dist/) and the demo page (demo/web/dist).
// Installs demo/web's packages first when they are missing (scripts/test-all.sh normally does).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const lib = resolve(here, "..");
const web = resolve(here, "../../../demo/web");
const run = (cwd, ...args) => execFileSync("npm", args, { cwd, stdio: "inherit" });

run(lib, "run", "build");
if (!existsSync(resolve(web, "node_modules"))) run(web, "ci", "--no-audit", "--no-fund");
run(web, "run", "build");
