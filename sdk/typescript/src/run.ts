/**
 * `traceAgentRun`: one agent run = one run on the server (created over the HTTP API, started,
 * then succeeded or failed) and one root span (`invoke_agent <name>`) whose trace the run links
 * to; every span started inside carries `tracefoundry.run_id`, and helpers inside send run events
 * through the run's event sender, flushed before the run is finished.
 */

import { SpanKind, SpanStatusCode, context, diag, isSpanContextValid, trace } from "@opentelemetry/api";
import type { Attributes, Span } from "@opentelemetry/api";

import { apiRequestPatiently as apiRequest } from "./api.js";
import { getConfig, getTracer } from "./config.js";
import { RUN_ID_ATTRIBUTE, currentScope, runStore } from "./context.js";
import type { RunEvent, RunScope } from "./context.js";
import { EventSender } from "./events.js";
import { attributeText, errorInfo, exceptionOf, jsonValue, wellFormed } from "./payload.js";

const MAX_OUTPUT_CHARS = 1 << 20;
const EVENT_TYPE = /^[a-z][a-z0-9_.]{0,63}$/;

export interface AgentRunOptions {
  /** The run's kind (default `agent.run`): `^[a-z][a-z0-9_.:-]{0,127}$`. */
  kind?: string;
  /** A display name (default: the kind). */
  name?: string;
  /** The run's input (any JSON value). */
  input?: unknown;
  /**
   * Attach to a run that exists already (e.g. inside a worker job): no run is created, and its
   * lifecycle stays with whoever owns it; spans and events still go to it.
   */
  runId?: string;
  /** Project slug (default: the API key's project). */
  project?: string;
  /** Sent as the run's `Idempotency-Key`: the same key and input give the same run. */
  idempotencyKey?: string;
  /** Extra attributes of the root span. */
  attributes?: Attributes;
}

export interface EventOptions {
  level?: "debug" | "info" | "warn" | "error";
  correlationId?: string;
  causationId?: string;
  stepId?: string;
}

export interface AgentRun {
  /** The server's run id; undefined when the run could not be created (server down, no API URL). */
  readonly runId: string | undefined;
  /** The trace id of the run's root span. */
  readonly traceId: string;
  /** The run's root span. */
  readonly span: Span;
  /** Any run event (`type` matches `^[a-z][a-z0-9_.]{0,63}$`, not `run.*`/`step.*`). */
  event(type: string, payload?: Record<string, unknown>, options?: EventOptions): void;
  note(text: string, data?: Record<string, unknown>): void;
  log(text: string, stream?: "stdout" | "stderr"): void;
  /** An `error` event (the run goes on; throw to fail it). */
  error(error: unknown, data?: Record<string, unknown>): void;
  progress(completed: number, total?: number, message?: string): void;
  /** Run events the sender could not deliver (queue full, server refusing, flush timeout). */
  readonly droppedEvents: number;
}

class RunHandle implements AgentRun, RunScope {
  runId: string | undefined = undefined;
  sender: EventSender | undefined = undefined;

  constructor(
    readonly span: Span,
    private readonly maxChars: number,
  ) {}

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get droppedEvents(): number {
    return this.sender?.dropped ?? 0;
  }

  emit(event: RunEvent): void {
    this.sender?.add(event);
  }

  event(type: string, payload: Record<string, unknown> = {}, options: EventOptions = {}): void {
    try {
      if (!this.sender) return;
      if (typeof type !== "string" || !EVENT_TYPE.test(type) || /^(run|step)\./.test(type)) {
        diag.warn(`tracefoundry: event type ${JSON.stringify(type)} is not allowed; not sent`);
        return;
      }
      const value = jsonValue(payload, this.maxChars);
      const event: RunEvent = {
        type,
        payload: value !== null && typeof value === "object" && !Array.isArray(value)
          ? (value as Record<string, unknown>)
          : { value },
      };
      if (options.level) event.level = options.level;
      if (options.correlationId) event.correlation_id = wellFormed(options.correlationId).slice(0, 64);
      if (options.causationId) event.causation_id = wellFormed(options.causationId).slice(0, 64);
      if (options.stepId) event.step_id = wellFormed(options.stepId).slice(0, 40);
      this.emit(event);
    } catch (error) {
      diag.debug("tracefoundry: event not recorded", error);
    }
  }

  note(text: string, data: Record<string, unknown> = {}): void {
    this.event("note", { ...data, text });
  }

  log(text: string, stream: "stdout" | "stderr" = "stdout"): void {
    this.event("log", { text: String(text), stream: stream === "stderr" ? "stderr" : "stdout" });
  }

  error(error: unknown, data: Record<string, unknown> = {}): void {
    const info = typeof error === "string" ? { type: "error", message: error } : errorInfo(error);
    this.event("error", { ...data, error: info }, { level: "error" });
  }

  progress(completed: number, total?: number, message?: string): void {
    const payload: Record<string, unknown> = { completed };
    if (total !== undefined) payload["total"] = total;
    if (message !== undefined) payload["message"] = message;
    this.event("progress", payload);
  }
}

/** The run the calling code runs in, if any. */
export function currentRun(): AgentRun | undefined {
  const scope = currentScope();
  return scope instanceof RunHandle ? scope : undefined;
}

/**
 * Run `fn` as an agent run. Returns what `fn` returns and re-throws what it throws, unchanged;
 * failures of the SDK or the server never reach the caller.
 */
export async function traceAgentRun<T>(
  options: AgentRunOptions,
  fn: (run: AgentRun) => Promise<T> | T,
): Promise<T> {
  let handle: RunHandle | undefined;
  let attached = false;
  let started = false;
  try {
    handle = await open(options ?? {});
    attached = Boolean(options?.runId);
    started = attached || (await startRun(handle));
  } catch (error) {
    diag.warn("tracefoundry: the run could not be set up; running without it", error);
  }
  if (!handle) return await fn(noopRun());

  const active = trace.setSpan(context.active(), handle.span);
  let failed = false;
  let thrown: unknown;
  let result: T | undefined;
  try {
    result = await context.with(active, () => runStore.run(handle, async () => fn(handle)));
  } catch (error) {
    failed = true;
    thrown = error;
  }
  await finish(handle, { attached, started, failed, thrown, result });
  if (failed) throw thrown;
  return result as T;
}

async function open(options: AgentRunOptions): Promise<RunHandle> {
  const config = getConfig();
  const kind = typeof options.kind === "string" && options.kind ? options.kind : "agent.run";
  const name = wellFormed(typeof options.name === "string" && options.name ? options.name : kind).slice(0, 256);
  const attributes: Attributes = {
    ...(options.attributes ?? {}),
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.agent.name": name.slice(0, 255),
    "tracefoundry.run.kind": wellFormed(kind).slice(0, 128),
  };
  if (config.capturePayloads && options.input !== undefined) {
    attributes["input.value"] = attributeText(options.input, config.maxPayloadChars);
  }
  const span = getTracer().startSpan(`invoke_agent ${name.slice(0, 200)}`, {
    kind: SpanKind.INTERNAL,
    attributes,
  });
  const handle = new RunHandle(span, config.maxPayloadChars);
  if (options.runId) {
    handle.runId = options.runId;
  } else if (config.apiUrl) {
    const body: Record<string, unknown> = { kind, name };
    if (options.input !== undefined) body["input"] = jsonValue(options.input, config.maxPayloadChars);
    if (options.project) body["project"] = options.project;
    if (options.idempotencyKey) body["idempotency_key"] = options.idempotencyKey;
    if (isSpanContextValid(span.spanContext())) body["trace_id"] = span.spanContext().traceId;
    const created = await apiRequest("POST", "/api/v1/runs", body);
    const id = (created.data as { id?: unknown } | null)?.id;
    if (created.ok && typeof id === "string") handle.runId = id;
    else diag.warn(`tracefoundry: the run was not created (status ${created.status})`);
  }
  if (handle.runId) {
    span.setAttribute(RUN_ID_ATTRIBUTE, handle.runId);
    handle.sender = new EventSender(handle.runId, config);
  }
  return handle;
}

async function startRun(handle: RunHandle): Promise<boolean> {
  if (!handle.runId) return false;
  const result = await apiRequest("POST", `/api/v1/runs/${encodeURIComponent(handle.runId)}/start`, {});
  if (!result.ok) diag.warn(`tracefoundry: the run was not started (status ${result.status})`);
  return result.ok;
}

async function finish(
  handle: RunHandle,
  outcome: { attached: boolean; started: boolean; failed: boolean; thrown: unknown; result: unknown },
): Promise<void> {
  const config = getConfig();
  try {
    const span = handle.span;
    if (outcome.failed) {
      const info = errorInfo(outcome.thrown);
      span.recordException(exceptionOf(outcome.thrown));
      span.setStatus({ code: SpanStatusCode.ERROR, message: info.message.slice(0, 1000) });
    } else {
      if (config.capturePayloads && outcome.result !== undefined) {
        span.setAttribute("output.value", attributeText(outcome.result, config.maxPayloadChars));
      }
      span.setStatus({ code: SpanStatusCode.OK });
    }
    span.end();
  } catch (error) {
    diag.debug("tracefoundry: the run span was not ended", error);
  }
  try {
    if (handle.sender) {
      await handle.sender.flush(config.flushTimeoutMs);
      handle.sender.close();
    }
    if (!handle.runId || outcome.attached || !outcome.started) return;
    const path = `/api/v1/runs/${encodeURIComponent(handle.runId)}`;
    if (outcome.failed) {
      await apiRequest("POST", `${path}/fail`, { error: errorInfo(outcome.thrown) });
    } else {
      const body: Record<string, unknown> = {};
      if (outcome.result !== undefined) body["output"] = jsonValue(outcome.result, MAX_OUTPUT_CHARS);
      await apiRequest("POST", `${path}/succeed`, body);
    }
  } catch (error) {
    diag.debug("tracefoundry: the run was not finished", error);
  }
}

function noopRun(): AgentRun {
  const span = trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
  return new RunHandle(span, 1);
}
