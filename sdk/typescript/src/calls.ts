/**
 * Wrappers for LLM and tool calls (typically a `fetch` to a model API or a tool): a span with the
 * OpenTelemetry GenAI attributes the server reads (traces/genai.py), the prompt/completion and
 * tool arguments/result captured size-capped under the attribute names the server moves to its
 * payload store (traces/span_payloads.py), retries and timeouts as span events, and — inside a
 * run — the run events `llm_request`/`llm_response` or `tool_call`/`tool_result`, the two of a
 * pair sharing one `correlation_id`.
 */

import { randomUUID } from "node:crypto";

import { SpanKind, SpanStatusCode, context, diag, trace } from "@opentelemetry/api";
import type { Attributes, Span } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

import { getConfig, getTracer } from "./config.js";
import { RUN_ID_ATTRIBUTE, currentScope } from "./context.js";
import type { RunEvent, RunScope } from "./context.js";
import { attributeText, errorInfo, exceptionOf, jsonValue, wellFormed } from "./payload.js";

const propagator = new W3CTraceContextPropagator();

export interface Call {
  readonly span: Span;
  readonly traceId: string;
  readonly spanId: string;
  /** Shared by the call's two run events. */
  readonly correlationId: string;
  /** Record that attempt number `attempt` (1 = the first retry) is starting, and why. */
  retry(attempt: number, reason?: string): void;
  /** Record that the call (or an attempt) timed out after `afterS` seconds. */
  timeout(afterS?: number): void;
  /** `traceparent` (and `tracestate`) of this call's span, for the outgoing request's headers. */
  traceHeaders(): Record<string, string>;
}

export interface LlmCallOptions {
  /** The requested model (`gen_ai.request.model`). */
  model: string;
  /** `gen_ai.provider.name` (and the older `gen_ai.system`), e.g. `openai`. */
  provider?: string;
  /** `gen_ai.operation.name` (default `chat`): `chat`, `text_completion`, `embeddings`, `generate_content`. */
  operation?: string;
  /** The prompt: a string or messages (any JSON value). */
  prompt?: unknown;
  /** Override the configured payload capture for this call. */
  capture?: boolean;
  /** More span attributes (e.g. `gen_ai.request.temperature`). */
  attributes?: Attributes;
}

export interface LlmResponse {
  /** The completion: a string or messages (any JSON value). */
  text?: unknown;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
  finishReasons?: string[] | string;
  responseId?: string;
  /** The call's cost when the provider tells it (else the server prices it from its table). */
  costUsd?: number;
}

export interface LlmCall extends Call {
  recordResponse(response: LlmResponse): void;
}

export interface ToolCallOptions {
  /** `gen_ai.tool.name`. */
  name: string;
  /** The arguments (any JSON value). */
  args?: unknown;
  /** `gen_ai.tool.call.id`, when the model gave one. */
  callId?: string;
  capture?: boolean;
  attributes?: Attributes;
}

export interface ToolCall extends Call {
  /** The result to record instead of the callback's return value. */
  recordResult(result: unknown): void;
}

function count(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined;
}

function label(value: unknown, max = 255): string {
  return typeof value === "string" ? wellFormed(value.trim()).slice(0, max) : "";
}

class BaseCall implements Call {
  readonly correlationId = randomUUID();
  readonly started = performance.now();
  timedOut = false;

  constructor(
    readonly span: Span,
    readonly scope: RunScope | undefined,
    readonly capture: boolean,
    readonly maxChars: number,
  ) {}

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get spanId(): string {
    return this.span.spanContext().spanId;
  }

  retry(attempt: number, reason?: string): void {
    try {
      const attributes: Attributes = {};
      if (count(attempt) !== undefined) {
        attributes["retry.attempt"] = attempt;
        this.span.setAttribute("retry.count", attempt);
      }
      if (reason !== undefined) attributes["retry.reason"] = label(String(reason), 1000);
      this.span.addEvent("retry", attributes);
    } catch (error) {
      diag.debug("tracefoundry: retry not recorded", error);
    }
  }

  timeout(afterS?: number): void {
    try {
      const attributes: Attributes = {};
      if (typeof afterS === "number" && Number.isFinite(afterS) && afterS >= 0) {
        attributes["timeout.after_s"] = afterS;
      }
      this.span.addEvent("timeout", attributes);
      this.span.setAttribute("tracefoundry.timeout", true);
      this.timedOut = true;
    } catch (error) {
      diag.debug("tracefoundry: timeout not recorded", error);
    }
  }

  traceHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    try {
      propagator.inject(trace.setSpan(context.active(), this.span), headers, {
        set: (carrier, key, value) => {
          carrier[key] = value;
        },
      });
    } catch (error) {
      diag.debug("tracefoundry: trace headers not built", error);
    }
    return headers;
  }

  emit(type: string, payload: Record<string, unknown>, level?: RunEvent["level"]): void {
    try {
      if (!this.scope) return;
      const clean = jsonValue(payload, this.maxChars * 2);
      const event: RunEvent = {
        type,
        payload: clean !== null && typeof clean === "object" && !Array.isArray(clean)
          ? (clean as Record<string, unknown>)
          : { value: clean },
        correlation_id: this.correlationId,
      };
      if (level) event.level = level;
      this.scope.emit(event);
    } catch (error) {
      diag.debug("tracefoundry: run event not recorded", error);
    }
  }

  ids(): Record<string, unknown> {
    return { trace_id: this.traceId, span_id: this.spanId };
  }

  elapsedMs(): number {
    return Math.round((performance.now() - this.started) * 1000) / 1000;
  }

  /** Record a thrown error on the span (a timeout as such too). */
  failSpan(error: unknown): ReturnType<typeof errorInfo> {
    const info = errorInfo(error, 2000);
    try {
      if (/timeout|deadline/i.test(info.type) && !this.timedOut) this.timeout();
      this.span.recordException(exceptionOf(error));
      this.span.setAttribute("error.type", info.type);
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: info.message.slice(0, 1000) });
    } catch (e) {
      diag.debug("tracefoundry: error not recorded", e);
    }
    return info;
  }
}

class LlmCallHandle extends BaseCall implements LlmCall {
  response: LlmResponse = {};

  recordResponse(response: LlmResponse): void {
    try {
      this.response = { ...this.response, ...(response ?? {}) };
      const r = response ?? {};
      const span = this.span;
      if (label(r.responseModel)) span.setAttribute("gen_ai.response.model", label(r.responseModel));
      if (label(r.responseId)) span.setAttribute("gen_ai.response.id", label(r.responseId));
      if (count(r.inputTokens) !== undefined) span.setAttribute("gen_ai.usage.input_tokens", r.inputTokens!);
      if (count(r.outputTokens) !== undefined) span.setAttribute("gen_ai.usage.output_tokens", r.outputTokens!);
      const reasons = finishReasons(r.finishReasons);
      if (reasons) span.setAttribute("gen_ai.response.finish_reasons", reasons);
      if (typeof r.costUsd === "number" && Number.isFinite(r.costUsd) && r.costUsd >= 0) {
        span.setAttribute("tracefoundry.cost_usd", r.costUsd);
      }
      if (this.capture && r.text !== undefined) {
        span.setAttribute("gen_ai.completion", attributeText(r.text, this.maxChars));
      }
    } catch (error) {
      diag.debug("tracefoundry: response not recorded", error);
    }
  }

  responsePayload(): Record<string, unknown> {
    const r = this.response;
    const payload: Record<string, unknown> = { ...this.ids(), duration_ms: this.elapsedMs() };
    if (label(r.responseModel)) payload["response_model"] = label(r.responseModel);
    if (count(r.inputTokens) !== undefined) payload["input_tokens"] = r.inputTokens;
    if (count(r.outputTokens) !== undefined) payload["output_tokens"] = r.outputTokens;
    const reasons = finishReasons(r.finishReasons);
    if (reasons) payload["finish_reasons"] = reasons;
    if (this.capture && r.text !== undefined) payload["text"] = jsonValue(r.text, this.maxChars);
    return payload;
  }
}

function finishReasons(value: unknown): string[] | undefined {
  const list = typeof value === "string" ? [value] : Array.isArray(value) ? value : [];
  const out = list.filter((v): v is string => typeof v === "string").map((v) => label(v, 64));
  return out.length ? out : undefined;
}

class ToolCallHandle extends BaseCall implements ToolCall {
  result: { value: unknown } | undefined;

  recordResult(result: unknown): void {
    this.result = { value: result };
  }
}

function runAttributes(scope: RunScope | undefined): Attributes {
  return scope?.runId ? { [RUN_ID_ATTRIBUTE]: scope.runId } : {};
}

/**
 * Wrap one LLM call. `fn` gets the call object; its value is returned and its errors re-thrown
 * unchanged. Call `recordResponse` with what the model answered.
 */
export async function llmCall<T>(
  options: LlmCallOptions,
  fn: (call: LlmCall) => Promise<T> | T,
): Promise<T> {
  let call: LlmCallHandle | undefined;
  try {
    const config = getConfig();
    const opts = options ?? ({} as LlmCallOptions);
    const operation = label(opts.operation) || "chat";
    const model = label(opts.model);
    const provider = label(opts.provider).toLowerCase();
    const capture = opts.capture ?? config.capturePayloads;
    const scope = currentScope();
    const attributes: Attributes = {
      ...(opts.attributes ?? {}),
      "gen_ai.operation.name": operation,
      ...runAttributes(scope),
    };
    if (model) attributes["gen_ai.request.model"] = model;
    if (provider) {
      attributes["gen_ai.provider.name"] = provider;
      attributes["gen_ai.system"] = provider;
    }
    if (capture && opts.prompt !== undefined) {
      attributes["gen_ai.prompt"] = attributeText(opts.prompt, config.maxPayloadChars);
    }
    const span = getTracer().startSpan(model ? `${operation} ${model}` : operation, {
      kind: SpanKind.CLIENT,
      attributes,
    });
    call = new LlmCallHandle(span, scope, capture, config.maxPayloadChars);
    const request: Record<string, unknown> = { ...call.ids(), operation };
    if (model) request["model"] = model;
    if (provider) request["provider"] = provider;
    if (capture && opts.prompt !== undefined) request["prompt"] = jsonValue(opts.prompt, config.maxPayloadChars);
    call.emit("llm_request", request);
  } catch (error) {
    diag.warn("tracefoundry: llmCall could not trace the call", error);
  }
  if (!call) return await fn(noopLlmCall());

  const handle = call;
  try {
    const value = await context.with(trace.setSpan(context.active(), handle.span), async () => fn(handle));
    safely(() => {
      handle.span.setStatus({ code: SpanStatusCode.OK });
      handle.emit("llm_response", handle.responsePayload());
    });
    return value;
  } catch (error) {
    safely(() => {
      const info = handle.failSpan(error);
      handle.emit("llm_response", { ...handle.responsePayload(), error: { type: info.type, message: info.message } }, "error");
    });
    throw error;
  } finally {
    safely(() => handle.span.end());
  }
}

/** Wrap one tool call. The callback's value is the recorded result (unless `recordResult` says otherwise). */
export async function toolCall<T>(
  options: ToolCallOptions,
  fn: (call: ToolCall) => Promise<T> | T,
): Promise<T> {
  let call: ToolCallHandle | undefined;
  try {
    const config = getConfig();
    const opts = options ?? ({} as ToolCallOptions);
    const name = label(opts.name) || "tool";
    const capture = opts.capture ?? config.capturePayloads;
    const scope = currentScope();
    const attributes: Attributes = {
      ...(opts.attributes ?? {}),
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": name,
      ...runAttributes(scope),
    };
    if (label(opts.callId)) attributes["gen_ai.tool.call.id"] = label(opts.callId);
    if (capture && opts.args !== undefined) {
      attributes["gen_ai.tool.call.arguments"] = attributeText(opts.args, config.maxPayloadChars);
    }
    const span = getTracer().startSpan(`execute_tool ${name}`, { kind: SpanKind.INTERNAL, attributes });
    call = new ToolCallHandle(span, scope, capture, config.maxPayloadChars);
    const payload: Record<string, unknown> = { ...call.ids(), name };
    if (label(opts.callId)) payload["call_id"] = label(opts.callId);
    if (capture && opts.args !== undefined) payload["args"] = jsonValue(opts.args, config.maxPayloadChars);
    call.emit("tool_call", payload);
  } catch (error) {
    diag.warn("tracefoundry: toolCall could not trace the call", error);
  }
  if (!call) return await fn(noopToolCall());

  const handle = call;
  const name = label(options?.name) || "tool";
  try {
    const value = await context.with(trace.setSpan(context.active(), handle.span), async () => fn(handle));
    safely(() => {
      const result = handle.result ? handle.result.value : value;
      const payload: Record<string, unknown> = { ...handle.ids(), name, duration_ms: handle.elapsedMs() };
      if (handle.capture && result !== undefined) {
        handle.span.setAttribute("gen_ai.tool.call.result", attributeText(result, handle.maxChars));
        payload["result"] = jsonValue(result, handle.maxChars);
      }
      handle.span.setStatus({ code: SpanStatusCode.OK });
      handle.emit("tool_result", payload);
    });
    return value;
  } catch (error) {
    safely(() => {
      const info = handle.failSpan(error);
      handle.emit(
        "tool_result",
        { ...handle.ids(), name, duration_ms: handle.elapsedMs(), error: { type: info.type, message: info.message } },
        "error",
      );
    });
    throw error;
  } finally {
    safely(() => handle.span.end());
  }
}

function safely(action: () => void): void {
  try {
    action();
  } catch (error) {
    diag.debug("tracefoundry: call bookkeeping failed", error);
  }
}

function noopSpan(): Span {
  return trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
}

function noopLlmCall(): LlmCall {
  return new LlmCallHandle(noopSpan(), undefined, false, 1);
}

function noopToolCall(): ToolCall {
  return new ToolCallHandle(noopSpan(), undefined, false, 1);
}
