// A real TraceFoundry server for the SDK's tests: a temporary SQLite database and payload
// directory, `manage.py migrate`, an API key from `manage.py apikey create`, and
// `python -m tracefoundry.server` on a free port, ready once `/readyz` answers 200.
// Python: $TRACEFOUNDRY_PYTHON, default ../../.venv/bin/python (the repository's venv).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.resolve(SDK_DIR, "..", "..");
const PYTHON = process.env.TRACEFOUNDRY_PYTHON
  ? path.resolve(SDK_DIR, process.env.TRACEFOUNDRY_PYTHON)
  : path.resolve(SDK_DIR, "../../.venv/bin/python");

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function run(args, env, timeoutMs = 180000) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${args.join(" ")} exited with ${code}:\n${stderr}`));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startServer() {
  const dir = mkdtempSync(path.join(tmpdir(), "tf-sdk-ts-"));
  const env = {
    ...process.env,
    DJANGO_SETTINGS_MODULE: "tracefoundry.settings",
    DATABASE_URL: `sqlite:///${dir}/tracefoundry.sqlite3`,
    DEBUG: "1",
    SECRET_KEY: `sdk-ts-${randomBytes(16).toString("hex")}`,
    ALLOWED_HOSTS: "127.0.0.1,localhost",
    TRACEFOUNDRY_PAYLOAD_DIR: path.join(dir, "payloads"),
    TRACEFOUNDRY_THROTTLE_ENQUEUE: "1000000/min",
    TRACEFOUNDRY_THROTTLE_CANCEL: "1000000/min",
    TRACEFOUNDRY_THROTTLE_INGEST: "1000000/min",
    PYTHONUNBUFFERED: "1",
  };
  delete env.REDIS_URL; // the in-memory channel layer: this server is alone
  await run(["manage.py", "migrate", "--noinput"], env);
  const out = await run(
    ["manage.py", "apikey", "create", "--project", "default", "--scopes", "runs:read,runs:write,ingest"],
    env,
  );
  const key = out.trim().split("\n").pop().trim();
  const port = await freePort();
  const logPath = path.join(dir, "server.log");
  const log = openSync(logPath, "w");
  const child = spawn(PYTHON, ["-m", "tracefoundry.server", "-b", "127.0.0.1", "-p", String(port)], {
    cwd: REPO,
    env,
    stdio: ["ignore", log, log],
  });
  const url = `http://127.0.0.1:${port}`;
  const server = {
    url,
    key,
    log: () => readFileSync(logPath, "utf8"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
    /** A JSON GET/POST to the API with the test's key. */
    async api(method, apiPath, body) {
      const response = await fetch(`${url}${apiPath}`, {
        method,
        headers: { Authorization: `Bearer ${key}`, Accept: "application/json", "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30000),
      });
      const text = await response.text();
      return { status: response.status, data: text ? JSON.parse(text) : null };
    },
  };
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited:\n${server.log()}`);
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error("the server did not become ready");
    }
    await sleep(100);
  }
  return server;
}

/** Wait until `probe()` returns a truthy value (polling; gives up after `ms`). */
export async function eventually(probe, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms (last: ${String(last)})`);
    await sleep(100);
  }
}
