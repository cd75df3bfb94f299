// The SDK against a live TraceFoundry server started by the test (see livestack.js): runs,
// run events, spans over OTLP, the run <-> trace link, payload separation, trace-context
// propagation by the middleware, failing callbacks, and retries through a 503.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";

import { trace } from "@opentelemetry/api";

import {
  configure,
  currentRun,
  flush,
  injectTraceHeaders,
  llmCall,
  shutdown,
  toolCall,
  traceAgentRun,
  traceHandler,
  traceMiddleware,
} from "../dist/index.js";
import { eventually, startServer } from "./livestack.js";

let server;
let model; // a local stand-in for a model API, reached with fetch
const modelRequests = [];

function listen(handler) {
  return new Promise((resolve) => {
    const s = http.createServer(handler);
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

function urlOf(s) {
  return `http://127.0.0.1:${s.address().port}`;
}

function configureFor(apiUrl, options = {}) {
  configure({
    apiUrl,
    apiKey: server.key,
    serviceName: "sdk-ts-test",
    environment: "ci",
    spanExportDelayMs: 50,
    eventFlushIntervalMs: 50,
    ...options,
  });
}

async function spansOf(traceId, count) {
  return eventually(async () => {
    const { status, data } = await server.api("GET", `/api/v1/traces/${traceId}/spans`);
    return status === 200 && data.spans.length >= count ? data.spans : null;
  });
}

async function span(traceId, spanId) {
  const { status, data } = await server.api("GET", `/api/v1/spans/${spanId}?trace_id=${traceId}`);
  assert.equal(status, 200);
  return data;
}

async function events(runId, types) {
  const { status, data } = await server.api("GET", `/api/v1/runs/${runId}/events?types=${types}&limit=500`);
  assert.equal(status, 200);
  return data.events;
}

before(async () => {
  server = await startServer();
  model = await listen((req, res) => {
    if (req.url === "/hang") {
      req.resume(); // never answers; the client gives up
      return;
    }
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      modelRequests.push({ headers: req.headers, body: JSON.parse(body || "{}") });
      res.setHeader("Content-Type", "application/json");
      res.end(
        JSON.stringify({
          id: "chatcmpl-1",
          model: "gpt-4o-mini-2024-07-18",
          choices: [{ message: { role: "assistant", content: "Call get_weather for Paris." }, finish_reason: "tool_calls" }],
          usage: { prompt_tokens: 42, completion_tokens: 7 },
        }),
      );
    });
  });
  configureFor(server.url);
});

after(async () => {
  await shutdown(5000);
  model?.close();
  await server?.stop();
});

describe("an agent run with an LLM call and a tool call", () => {
  let runId;
  let traceId;
  let result;

  before(async () => {
    result = await traceAgentRun(
      { kind: "agent.weather", name: "weather agent", input: { question: "Weather in Paris?" } },
      async (run) => {
        runId = run.runId;
        traceId = run.traceId;
        run.note("planning", { step: 1 });
        const answer = await llmCall(
          { model: "gpt-4o-mini", provider: "openai", prompt: [{ role: "user", content: "Weather in Paris?" }] },
          async (call) => {
            call.retry(1, "rate limited");
            const response = await fetch(`${urlOf(model)}/v1/chat/completions`, {
              method: "POST",
              headers: { "Content-Type": "application/json", ...call.traceHeaders() },
              body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Weather in Paris?" }] }),
              signal: AbortSignal.timeout(10000),
            });
            const body = await response.json();
            call.recordResponse({
              text: body.choices[0].message.content,
              responseModel: body.model,
              inputTokens: body.usage.prompt_tokens,
              outputTokens: body.usage.completion_tokens,
              finishReasons: [body.choices[0].finish_reason],
            });
            return body.choices[0].message.content;
          },
        );
        const weather = await toolCall({ name: "get_weather", args: { city: "Paris" } }, async () => {
          assert.equal(currentRun()?.runId, runId, "the tool code sees its run");
          return { city: "Paris", celsius: 21 };
        });
        run.log("done");
        return { answer, weather };
      },
    );
    await flush();
  });

  test("the callback's value comes back and the run succeeded with it as output", async () => {
    assert.deepEqual(result, { answer: "Call get_weather for Paris.", weather: { city: "Paris", celsius: 21 } });
    assert.match(runId, /^run_/);
    const { status, data } = await server.api("GET", `/api/v1/runs/${runId}`);
    assert.equal(status, 200);
    assert.equal(data.state, "succeeded");
    assert.equal(data.kind, "agent.weather");
    assert.equal(data.name, "weather agent");
    assert.deepEqual(data.input, { question: "Weather in Paris?" });
    assert.deepEqual(data.output, result);
    assert.equal(data.trace_id, traceId);
  });

  test("the run's events: each call a pair sharing one correlation id", async () => {
    const list = await events(runId, "note,llm_request,llm_response,tool_call,tool_result,log");
    assert.deepEqual(
      list.map((e) => e.type),
      ["note", "llm_request", "llm_response", "tool_call", "tool_result", "log"],
    );
    const [note, llmRequest, llmResponse, toolCallEvent, toolResult] = list;
    assert.equal(note.payload.text, "planning");
    assert.ok(llmRequest.correlation_id);
    assert.equal(llmResponse.correlation_id, llmRequest.correlation_id);
    assert.ok(toolCallEvent.correlation_id);
    assert.equal(toolResult.correlation_id, toolCallEvent.correlation_id);
    assert.notEqual(toolCallEvent.correlation_id, llmRequest.correlation_id);
    assert.equal(llmRequest.payload.model, "gpt-4o-mini");
    assert.equal(llmRequest.payload.provider, "openai");
    assert.deepEqual(llmRequest.payload.prompt, [{ role: "user", content: "Weather in Paris?" }]);
    assert.equal(llmResponse.payload.text, "Call get_weather for Paris.");
    assert.equal(llmResponse.payload.input_tokens, 42);
    assert.equal(llmResponse.payload.output_tokens, 7);
    assert.deepEqual(llmResponse.payload.finish_reasons, ["tool_calls"]);
    assert.deepEqual(toolCallEvent.payload.args, { city: "Paris" });
    assert.deepEqual(toolResult.payload.result, { city: "Paris", celsius: 21 });
    assert.equal(llmRequest.payload.trace_id, traceId);
  });

  test("the trace: linked to the run, GenAI fields extracted, resource applied", async () => {
    const spans = await spansOf(traceId, 3);
    const { status, data } = await server.api("GET", `/api/v1/traces/${traceId}`);
    assert.equal(status, 200);
    assert.equal(data.run_id, runId);
    assert.equal(data.service_name, "sdk-ts-test");
    assert.equal(data.environment, "ci");
    assert.equal(data.root_span_name, "invoke_agent weather agent");
    assert.deepEqual(data.models, ["gpt-4o-mini-2024-07-18"]);
    assert.deepEqual(data.tools, ["get_weather"]);
    assert.equal(data.input_tokens, 42);
    assert.equal(data.output_tokens, 7);
    assert.equal(data.has_retry, true);

    const byType = Object.fromEntries(spans.map((s) => [s.span_type, s]));
    assert.deepEqual(Object.keys(byType).sort(), ["agent", "llm", "tool"]);
    const root = byType.agent;
    assert.equal(root.parent_span_id, "");
    assert.equal(byType.llm.parent_span_id, root.span_id);
    assert.equal(byType.tool.parent_span_id, root.span_id);
    assert.equal(byType.llm.name, "chat gpt-4o-mini");
    assert.equal(byType.tool.name, "execute_tool get_weather");
    for (const s of spans) assert.equal(s.run_id, runId);

    const llm = await span(traceId, byType.llm.span_id);
    assert.equal(llm.model, "gpt-4o-mini-2024-07-18");
    assert.equal(llm.input_tokens, 42);
    assert.equal(llm.output_tokens, 7);
    assert.equal(llm.is_retry, true);
    assert.equal(llm.kind, "client");
    assert.equal(llm.attributes["gen_ai.operation.name"], "chat");
    assert.equal(llm.attributes["gen_ai.provider.name"], "openai");
    assert.equal(llm.attributes["gen_ai.request.model"], "gpt-4o-mini");
    assert.deepEqual(llm.attributes["gen_ai.response.finish_reasons"], ["tool_calls"]);
    assert.equal(llm.attributes["gen_ai.completion"], "Call get_weather for Paris.");
    assert.deepEqual(JSON.parse(llm.attributes["gen_ai.prompt"]), [{ role: "user", content: "Weather in Paris?" }]);
    assert.equal(llm.attributes["tracefoundry.run_id"], runId);
    assert.deepEqual(llm.events.map((e) => e.name), ["retry"]);

    const tool = await span(traceId, byType.tool.span_id);
    assert.equal(tool.tool_name, "get_weather");
    assert.deepEqual(JSON.parse(tool.attributes["gen_ai.tool.call.arguments"]), { city: "Paris" });
    assert.deepEqual(JSON.parse(tool.attributes["gen_ai.tool.call.result"]), { city: "Paris", celsius: 21 });
  });

  test("the model API received the LLM span's trace context", async () => {
    const spans = await spansOf(traceId, 3);
    const llm = spans.find((s) => s.span_type === "llm");
    const sent = modelRequests.at(-1).headers.traceparent;
    assert.equal(sent, `00-${traceId}-${llm.span_id}-01`);
  });
});

test("large prompts and results go to the payload store; texts are capped", async () => {
  configureFor(server.url, { maxPayloadChars: 30000 });
  try {
    const prompt = "p".repeat(20000); // over the server's 8 KB inline limit, under the cap
    const huge = "r".repeat(100000); // over the cap
    let runId;
    let traceId;
    await traceAgentRun({ kind: "agent.big" }, async (run) => {
      runId = run.runId;
      traceId = run.traceId;
      await llmCall({ model: "m1", provider: "local", prompt }, async (call) => {
        call.recordResponse({ text: "ok", inputTokens: 1, outputTokens: 1 });
      });
      await toolCall({ name: "dump", args: { n: 1 } }, async () => huge);
    });
    await flush();

    const [request] = await events(runId, "llm_request");
    assert.equal(request.payload.prompt.truncated, true);
    assert.match(request.payload.prompt.payload_ref, /^sha256:[0-9a-f]{64}$/);
    assert.equal(request.payload.prompt.size_bytes, 20000);
    const [result] = await events(runId, "tool_result");
    assert.equal(result.payload.result.truncated, true);
    assert.ok(result.payload.result.size_bytes > 30000);
    assert.ok(result.payload.result.size_bytes < 30100, "cut to the configured cap");

    const spans = await spansOf(traceId, 3);
    const llm = await span(traceId, spans.find((s) => s.span_type === "llm").span_id);
    assert.match(llm.attributes["tracefoundry.payload.prompt_ref"], /^sha256:[0-9a-f]{64}$/);
    assert.ok(llm.attributes["gen_ai.prompt"].length < 2000, "a preview stays on the span");
    const tool = await span(traceId, spans.find((s) => s.span_type === "tool").span_id);
    assert.match(tool.attributes["tracefoundry.payload.tool_result_ref"], /^sha256:[0-9a-f]{64}$/);
  } finally {
    configureFor(server.url);
  }
});

test("an LLM call that times out: a timeout on the span, the trace and the llm_response", async () => {
  let runId;
  let traceId;
  const value = await traceAgentRun({ kind: "agent.timeout" }, async (run) => {
    runId = run.runId;
    traceId = run.traceId;
    try {
      await llmCall({ model: "slow-model", provider: "local", prompt: "hi" }, async (call) => {
        await fetch(`${urlOf(model)}/hang`, { headers: call.traceHeaders(), signal: AbortSignal.timeout(200) });
      });
    } catch (error) {
      return `gave up: ${error.name}`;
    }
    return "answered";
  });
  assert.equal(value, "gave up: TimeoutError");
  await flush();
  const [request, response] = await events(runId, "llm_request,llm_response");
  assert.equal(response.correlation_id, request.correlation_id);
  assert.equal(response.level, "error");
  assert.equal(response.payload.error.type, "TimeoutError");
  const spans = await spansOf(traceId, 2);
  const llm = spans.find((s) => s.span_type === "llm");
  assert.equal(llm.is_timeout, true);
  assert.equal(llm.status_code, "error");
  const detail = await span(traceId, llm.span_id);
  const exception = detail.events.find((e) => e.name === "exception");
  assert.equal(exception.attributes["exception.type"], "TimeoutError");
  const { data } = await server.api("GET", `/api/v1/traces/${traceId}`);
  assert.equal(data.has_timeout, true);
});

test("capturePayloads: false keeps prompts, completions, args and results out", async () => {
  configureFor(server.url, { capturePayloads: false });
  try {
    let runId;
    let traceId;
    await traceAgentRun({ kind: "agent.quiet", input: { secret: "s" } }, async (run) => {
      runId = run.runId;
      traceId = run.traceId;
      await llmCall({ model: "m1", prompt: "private prompt" }, async (call) => {
        call.recordResponse({ text: "private answer", inputTokens: 3, outputTokens: 2 });
      });
      await toolCall({ name: "lookup", args: { q: "private" } }, async () => "private result");
    });
    await flush();
    const list = await events(runId, "llm_request,llm_response,tool_call,tool_result");
    assert.equal(list.length, 4);
    assert.doesNotMatch(JSON.stringify(list.map((e) => e.payload)), /private/);
    const spans = await spansOf(traceId, 3);
    for (const s of spans) {
      assert.doesNotMatch(JSON.stringify((await span(traceId, s.span_id)).attributes), /private|secret/);
    }
    const llm = spans.find((s) => s.span_type === "llm");
    assert.equal(llm.input_tokens, 3); // the GenAI fields stay
  } finally {
    configureFor(server.url);
  }
});

test("a failing callback: its error re-thrown unchanged, the run failed with type, message, stack", async () => {
  class PlanningError extends Error {}
  const error = new PlanningError("no plan for that");
  let runId;
  let traceId;
  await assert.rejects(
    traceAgentRun({ kind: "agent.failing" }, async (run) => {
      runId = run.runId;
      traceId = run.traceId;
      await toolCall({ name: "search", args: { q: "x" } }, async () => {
        throw new TypeError("search is down");
      }).catch(() => run.note("search failed, giving up"));
      throw error;
    }),
    (thrown) => thrown === error,
  );
  await flush();
  const { data } = await server.api("GET", `/api/v1/runs/${runId}`);
  assert.equal(data.state, "failed");
  const stored = JSON.parse(data.error); // the server keeps the error as (redacted) text
  assert.equal(stored.type, "PlanningError");
  assert.equal(stored.message, "no plan for that");
  assert.match(stored.stack, /Error: no plan for that\n\s+at .*live\.test\.js/);

  const [call, result] = await events(runId, "tool_call,tool_result");
  assert.equal(result.correlation_id, call.correlation_id);
  assert.equal(result.level, "error");
  assert.deepEqual(result.payload.error, { type: "TypeError", message: "search is down" });

  const spans = await spansOf(traceId, 2);
  const root = spans.find((s) => s.span_type === "agent");
  assert.equal(root.status_code, "error");
  assert.equal(spans.find((s) => s.span_type === "tool").status_code, "error");
});

test("attached to an existing run (runId): events and spans go to it, its lifecycle stays with its owner", async () => {
  const created = await server.api("POST", "/api/v1/runs", { kind: "worker.job", input: {} });
  assert.equal(created.status, 201);
  const id = created.data.id;
  assert.equal((await server.api("POST", `/api/v1/runs/${id}/start`, {})).status, 200);
  let traceId;
  const value = await traceAgentRun({ runId: id, name: "inside a job" }, async (run) => {
    traceId = run.traceId;
    assert.equal(run.runId, id);
    await toolCall({ name: "step", args: {} }, async () => "done");
    return 7;
  });
  assert.equal(value, 7);
  await flush();
  const list = await events(id, "tool_call,tool_result");
  assert.deepEqual(list.map((e) => e.type), ["tool_call", "tool_result"]);
  const { data } = await server.api("GET", `/api/v1/runs/${id}`);
  assert.equal(data.state, "running", "the SDK did not finish a run it did not create");
  assert.equal(data.trace_id, traceId, "the spans' tracefoundry.run_id linked the trace");
  const spans = await spansOf(traceId, 2);
  for (const s of spans) assert.equal(s.run_id, id);
});

test("the event queue is bounded: what does not fit is dropped and counted, the rest arrives", async () => {
  configureFor(server.url, { maxQueuedEvents: 5, eventFlushIntervalMs: 60000 });
  try {
    let runId;
    let dropped;
    await traceAgentRun({ kind: "agent.chatty" }, async (run) => {
      runId = run.runId;
      for (let i = 0; i < 20; i += 1) run.note(`note ${i}`);
      dropped = run.droppedEvents;
    });
    assert.equal(dropped, 15);
    const notes = await events(runId, "note");
    assert.deepEqual(notes.map((e) => e.payload.text), ["note 0", "note 1", "note 2", "note 3", "note 4"]);
  } finally {
    configureFor(server.url);
  }
});

test("a 429 on creating the run and a 503 on an event batch are retried", async () => {
  // A proxy in front of the real server refuses the first run creation (429) and the first
  // event batch (503), with Retry-After, as a throttled or busy server does.
  const refused = { create: 0, events: 0 };
  const proxy = await listen((req, res) => {
    const which = req.method !== "POST" ? null
      : req.url === "/api/v1/runs" ? "create"
      : /\/events$/.test(req.url) ? "events" : null;
    if (which && refused[which] === 0) {
      refused[which] += 1;
      req.resume();
      res.writeHead(which === "create" ? 429 : 503, { "Retry-After": "0", "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "unavailable", message: "busy", details: {} } }));
      return;
    }
    const target = new URL(req.url, server.url);
    const forward = http.request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  });
  configureFor(urlOf(proxy), { otlpEndpoint: `${server.url}/otlp/v1/traces`, otlpHeaders: { Authorization: `Bearer ${server.key}` } });
  try {
    let runId;
    await traceAgentRun({ kind: "agent.retry" }, async (run) => {
      runId = run.runId;
      for (let i = 0; i < 5; i += 1) run.note(`step ${i}`);
    });
    assert.deepEqual(refused, { create: 1, events: 1 });
    const notes = await events(runId, "note");
    assert.deepEqual(notes.map((e) => e.payload.text), ["step 0", "step 1", "step 2", "step 3", "step 4"]);
    const { data } = await server.api("GET", `/api/v1/runs/${runId}`);
    assert.equal(data.state, "succeeded");
  } finally {
    configureFor(server.url);
    proxy.close();
  }
});

describe("trace-context propagation middleware", () => {
  const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const incomingSpan = "00f067aa0ba902b7";
  const headers = {
    traceparent: `00-${incomingTrace}-${incomingSpan}-01`,
    tracestate: "vendor=abc",
  };

  async function handlerScenario(makeServer) {
    const seen = {};
    const app = await listen(
      makeServer(async (req, res) => {
        const active = trace.getActiveSpan()?.spanContext();
        seen.traceId = active?.traceId;
        seen.spanId = active?.spanId;
        seen.traceState = active?.traceState?.serialize();
        seen.injected = injectTraceHeaders();
        await llmCall({ model: "m-handler", provider: "local" }, async (call) => {
          seen.outgoing = call.traceHeaders();
          call.recordResponse({ inputTokens: 1, outputTokens: 1 });
        });
        res.statusCode = 201;
        res.end("created");
      }),
    );
    try {
      const response = await fetch(`${urlOf(app)}/agent/ask?q=1`, { method: "POST", headers, body: "{}" });
      assert.equal(response.status, 201);
      assert.equal(await response.text(), "created");
    } finally {
      app.close();
    }
    return seen;
  }

  async function check(seen, spanName) {
    assert.equal(seen.traceId, incomingTrace, "the handler runs in the incoming trace");
    assert.notEqual(seen.spanId, incomingSpan);
    assert.equal(seen.traceState, "vendor=abc");
    assert.equal(seen.outgoing.tracestate, "vendor=abc");
    assert.deepEqual(seen.injected, { traceparent: `00-${incomingTrace}-${seen.spanId}-01`, tracestate: "vendor=abc" });
    await flush();
    const spans = await spansOf(incomingTrace, 2);
    const serverSpan = spans.find((s) => s.span_id === seen.spanId);
    assert.ok(serverSpan, "the server span was exported");
    assert.equal(serverSpan.parent_span_id, incomingSpan, "its parent is the incoming span");
    assert.equal(serverSpan.kind, "server");
    assert.equal(serverSpan.name, spanName);
    const llm = spans.find((s) => s.span_type === "llm" && s.parent_span_id === seen.spanId);
    assert.ok(llm, "the handler's LLM span is a child of the server span");
    const detail = await span(incomingTrace, seen.spanId);
    assert.equal(detail.attributes["http.request.method"], "POST");
    assert.equal(detail.attributes["url.path"], "/agent/ask");
    assert.equal(detail.attributes["http.response.status_code"], 201);
  }

  test("traceHandler wraps an http.createServer handler", async () => {
    const seen = await handlerScenario((handler) => traceHandler(handler));
    await check(seen, "POST /agent/ask");
  });

  test("traceMiddleware is an Express-style (req, res, next) middleware", async () => {
    const middleware = traceMiddleware({ spanName: (req) => `${req.method} /agent/:action` });
    const seen = await handlerScenario((handler) => (req, res) => {
      middleware(req, res, () => handler(req, res));
    });
    await check(seen, "POST /agent/:action");
  });

  test("without a traceparent the request starts a new trace", async () => {
    let active;
    const app = await listen(
      traceHandler((req, res) => {
        active = trace.getActiveSpan()?.spanContext();
        res.end("ok");
      }),
    );
    try {
      await (await fetch(`${urlOf(app)}/x`)).text();
    } finally {
      app.close();
    }
    assert.match(active.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(active.traceId, incomingTrace);
    await flush();
    const [root] = await spansOf(active.traceId, 1);
    assert.equal(root.parent_span_id, "");
    assert.equal(root.name, "GET /x");
  });
});
