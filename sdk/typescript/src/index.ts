/**
 * TraceFoundry SDK for Node: trace-context middleware, LLM and tool call wrappers, agent runs with
 * run events, over OpenTelemetry. Nothing exported here throws for a failure of its own or of the
 * server; errors of the caller's callbacks are re-thrown unchanged.
 */

import { diag } from "@opentelemetry/api";

import { getConfig, getOwnProvider } from "./config.js";
import { activity } from "./context.js";
import { liveSenders } from "./events.js";

export { configure, getConfig, parseKeyValues, resolveConfig } from "./config.js";
export type { ResolvedConfig, TraceFoundryOptions } from "./config.js";
export { RUN_ID_ATTRIBUTE } from "./context.js";
export { llmCall, toolCall } from "./calls.js";
export type { Call, LlmCall, LlmCallOptions, LlmResponse, ToolCall, ToolCallOptions } from "./calls.js";
export { currentRun, traceAgentRun } from "./run.js";
export type { AgentRun, AgentRunOptions, EventOptions } from "./run.js";
export { extractContext, injectTraceHeaders, traceHandler, traceMiddleware } from "./middleware.js";
export type { MiddlewareOptions } from "./middleware.js";
export { SDK_VERSION } from "./version.js";

// When the event loop runs dry with spans or events still waiting (a script that never called
// `shutdown()`), send them, within the flush timeout.
try {
  process.on("beforeExit", () => {
    if (!activity.dirty) return;
    activity.dirty = false;
    void flush();
  });
} catch {
  // no process hooks: flush() stays available
}

function within(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    timer.unref?.();
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (error) => {
        diag.debug("tracefoundry: flush failed", error);
        clearTimeout(timer);
        resolve();
      },
    );
  });
}

/** Send the queued run events and spans now; waits at most `timeoutMs` (default: `flushTimeoutMs`). */
export async function flush(timeoutMs?: number): Promise<void> {
  try {
    const ms = timeoutMs ?? getConfig().flushTimeoutMs;
    const provider = getOwnProvider();
    await within(
      Promise.all([
        ...[...liveSenders].map((sender) => sender.flush(ms)),
        provider ? provider.forceFlush() : Promise.resolve(),
      ]),
      ms,
    );
  } catch (error) {
    diag.debug("tracefoundry: flush failed", error);
  }
}

/** Flush, then shut the SDK's own tracer provider down (bounded like `flush`). */
export async function shutdown(timeoutMs?: number): Promise<void> {
  await flush(timeoutMs);
  try {
    const provider = getOwnProvider();
    if (provider) await within(provider.shutdown(), timeoutMs ?? 5000);
  } catch (error) {
    diag.debug("tracefoundry: shutdown failed", error);
  }
}
