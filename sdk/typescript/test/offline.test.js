// The SDK without a working server: configuration from the environment, and an agent whose
// server is down (nothing listens) or hangs (accepts, never answers) still gets its values and
// its own errors back, within a generous bound, and nothing of the SDK's throws.

import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";

import {
  configure,
  flush,
  llmCall,
  resolveConfig,
  shutdown,
  toolCall,
  traceAgentRun,
} from "../dist/index.js";
import { freePort } from "./livestack.js";

const GENEROUS_MS = 30000;

function withEnv(vars, fn) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const CLEAR = {
  OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
  OTEL_EXPORTER_OTLP_HEADERS: undefined,
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: undefined,
  TRACEFOUNDRY_API_URL: undefined,
  TRACEFOUNDRY_API_KEY: undefined,
  TRACEFOUNDRY_CAPTURE_PAYLOADS: undefined,
};

test("the OTLP endpoint defaults to the TraceFoundry server, with the API key as bearer token", () => {
  const config = withEnv({ ...CLEAR, TRACEFOUNDRY_API_URL: "http://tf.example:8000/", TRACEFOUNDRY_API_KEY: "tf_k" }, () =>
    resolveConfig(),
  );
  assert.equal(config.apiUrl, "http://tf.example:8000");
  assert.equal(config.otlpEndpoint, "http://tf.example:8000/otlp/v1/traces");
  assert.deepEqual(config.otlpHeaders, { Authorization: "Bearer tf_k" });
  assert.equal(config.capturePayloads, true);
});

test("OTEL_* variables win over the default; the key never goes to another host", () => {
  const base = { ...CLEAR, TRACEFOUNDRY_API_URL: "http://tf.example:8000", TRACEFOUNDRY_API_KEY: "tf_k" };
  let config = withEnv({ ...base, OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }, () => resolveConfig());
  assert.equal(config.otlpEndpoint, "http://collector:4318/v1/traces");
  assert.deepEqual(config.otlpHeaders, {});
  config = withEnv(
    {
      ...base,
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://tf.example:8000/otlp/v1/traces",
      OTEL_EXPORTER_OTLP_HEADERS: "x-team=agents,Authorization=Bearer%20tf_other",
    },
    () => resolveConfig(),
  );
  assert.equal(config.otlpEndpoint, "http://tf.example:8000/otlp/v1/traces");
  assert.deepEqual(config.otlpHeaders, { "x-team": "agents", Authorization: "Bearer tf_other" });
  config = withEnv({ ...base, TRACEFOUNDRY_CAPTURE_PAYLOADS: "0" }, () =>
    resolveConfig({ serviceName: "svc", environment: "staging", apiUrl: "http://other:1" }),
  );
  assert.equal(config.capturePayloads, false);
  assert.equal(config.otlpEndpoint, "http://other:1/otlp/v1/traces");
  assert.deepEqual(config.resourceAttributes, {
    "service.name": "svc",
    "deployment.environment": "staging",
    "deployment.environment.name": "staging",
  });
});

test("nothing configured: no export, and the helpers still just run the callbacks", async () => {
  withEnv(CLEAR, () => configure({}));
  const value = await traceAgentRun({ kind: "agent.local" }, async (run) => {
    assert.equal(run.runId, undefined);
    run.note("nobody listens");
    return llmCall({ model: "m" }, async (call) => {
      call.recordResponse({ text: "hi", inputTokens: 1, outputTokens: 1 });
      return "hi";
    });
  });
  assert.equal(value, "hi");
});

async function agent() {
  return traceAgentRun({ kind: "agent.offline", input: { x: 1 } }, async (run) => {
    run.note("starting");
    run.progress(1, 2);
    const text = await llmCall({ model: "m", provider: "local", prompt: "hello" }, async (call) => {
      call.retry(1, "first try failed");
      call.recordResponse({ text: "world", inputTokens: 1, outputTokens: 1 });
      return "world";
    });
    const n = await toolCall({ name: "count", args: { text } }, async () => text.length);
    for (let i = 0; i < 50; i += 1) run.log(`line ${i}`);
    return { text, n };
  });
}

async function offlineScenario(apiUrl) {
  configure({
    apiUrl,
    apiKey: "tf_nobody",
    requestTimeoutMs: 1000,
    exportTimeoutMs: 1000,
    flushTimeoutMs: 1000,
    spanExportDelayMs: 50,
  });
  const started = Date.now();
  assert.deepEqual(await agent(), { text: "world", n: 5 });
  class Oops extends Error {}
  const error = new Oops("the agent's own failure");
  await assert.rejects(
    traceAgentRun({ kind: "agent.offline" }, async () => {
      throw error;
    }),
    (thrown) => thrown === error,
  );
  await flush(2000);
  assert.ok(Date.now() - started < GENEROUS_MS, `took ${Date.now() - started} ms`);
}

test("the server down (nothing listening): values and the agent's own errors come back", async () => {
  await offlineScenario(`http://127.0.0.1:${await freePort()}`);
});

test("the server hanging (never answering): bounded by the request timeout", async () => {
  const sockets = new Set();
  const silent = net.createServer((socket) => {
    sockets.add(socket); // read nothing, answer nothing
    socket.on("error", () => {});
  });
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  try {
    await offlineScenario(`http://127.0.0.1:${silent.address().port}`);
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

after(async () => {
  await shutdown(2000);
});
