/**
 * Configuration: the standard OTEL_* variables, TRACEFOUNDRY_API_URL / TRACEFOUNDRY_API_KEY, and
 * `configure({...})` on top. Building the tracer provider lives here too: one provider of the
 * SDK's own (OTLP over HTTP, batched) unless the application hands in its own.
 */

import { context, diag, trace } from "@opentelemetry/api";
import type { Attributes, Tracer, TracerProvider } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

import { RunIdSpanProcessor } from "./context.js";
import { SDK_NAME, SDK_VERSION } from "./version.js";

export interface TraceFoundryOptions {
  /** Base URL of the TraceFoundry server, e.g. `http://127.0.0.1:8000` (env `TRACEFOUNDRY_API_URL`). */
  apiUrl?: string;
  /** An API key (`tf_…`) with `runs:write` (runs and events) and `ingest` (spans) (env `TRACEFOUNDRY_API_KEY`). */
  apiKey?: string;
  /** Resource `service.name` (env `OTEL_SERVICE_NAME`, else `OTEL_RESOURCE_ATTRIBUTES`). */
  serviceName?: string;
  /** Resource `deployment.environment` (and `deployment.environment.name`). */
  environment?: string;
  /** More resource attributes, on top of `OTEL_RESOURCE_ATTRIBUTES`. */
  resourceAttributes?: Attributes;
  /**
   * The full OTLP/HTTP traces URL. Default: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
   * `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `apiUrl` + `/otlp/v1/traces`; none: spans
   * are not exported.
   */
  otlpEndpoint?: string;
  /**
   * Headers of the OTLP requests. Default: `OTEL_EXPORTER_OTLP_TRACES_HEADERS` /
   * `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k=v`), plus `Authorization: Bearer <apiKey>` when the
   * endpoint is on the TraceFoundry server and no Authorization header is given.
   */
  otlpHeaders?: Record<string, string>;
  /** Capture prompts, completions, tool arguments and results (default true; env `TRACEFOUNDRY_CAPTURE_PAYLOADS=0` turns it off). */
  capturePayloads?: boolean;
  /** Captured texts are cut to this many characters (default 65536). */
  maxPayloadChars?: number;
  /** Timeout of each request to the TraceFoundry API (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Timeout of one OTLP export, retries included (default 10000 ms). */
  exportTimeoutMs?: number;
  /** How long the end of `traceAgentRun` (and `flush()`) may wait for queued events (default 10000 ms). */
  flushTimeoutMs?: number;
  /** Events per batch, at most 1000 (default 100). */
  eventBatchSize?: number;
  /** A batch leaves at least this often while events wait (default 1000 ms). */
  eventFlushIntervalMs?: number;
  /** Events waiting per run beyond this are dropped and counted (default 10000). */
  maxQueuedEvents?: number;
  /** Waiting events of one run beyond this many JSON characters are dropped and counted (default 16 Mi). */
  maxQueuedChars?: number;
  /** Retries of one event batch on 429/503/network errors (default 5). */
  maxEventRetries?: number;
  /** Delay before spans are exported in a batch (default 1000 ms). */
  spanExportDelayMs?: number;
  /**
   * Use the application's own tracer provider instead of building one (then its exporter and
   * resource apply, and the SDK neither flushes nor shuts it down).
   */
  tracerProvider?: TracerProvider;
  /** Register the SDK's provider and an AsyncLocalStorage context manager globally (default true). */
  registerGlobal?: boolean;
}

export interface ResolvedConfig {
  apiUrl: string; // no trailing slash; "" when not set
  apiKey: string;
  otlpEndpoint: string; // "" when spans are not exported
  otlpHeaders: Record<string, string>;
  capturePayloads: boolean;
  maxPayloadChars: number;
  requestTimeoutMs: number;
  exportTimeoutMs: number;
  flushTimeoutMs: number;
  eventBatchSize: number;
  eventFlushIntervalMs: number;
  maxQueuedEvents: number;
  maxQueuedChars: number;
  maxEventRetries: number;
  spanExportDelayMs: number;
  resourceAttributes: Attributes;
}

interface State {
  config: ResolvedConfig;
  tracer: Tracer;
  ownProvider: NodeTracerProvider | null;
}

let state: State | null = null;
let contextManagerSet = false;
let globalIsOurs = false; // the global tracer provider is one the SDK built

function env(name: string): string {
  const value = process.env[name];
  return value === undefined ? "" : value.trim();
}

function positive(value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === "string" && value !== "" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isFinite(n) || n <= 0) return fallback;
  return Math.min(Math.floor(n), max);
}

/** `k=v,k2=v2` with URL-encoded parts (the OTEL_* header and resource attribute format). */
export function parseKeyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of text.split(",")) {
    const at = item.indexOf("=");
    if (at <= 0) continue;
    try {
      const key = decodeURIComponent(item.slice(0, at).trim());
      const value = decodeURIComponent(item.slice(at + 1).trim());
      if (key) out[key] = value;
    } catch {
      // a malformed escape: skip that pair, as the OpenTelemetry SDKs do
    }
  }
  return out;
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** The settings `configure(options)` ends up with (environment first, options on top). */
export function resolveConfig(options: TraceFoundryOptions = {}): ResolvedConfig {
  const apiUrl = stripSlash(options.apiUrl ?? env("TRACEFOUNDRY_API_URL"));
  const apiKey = options.apiKey ?? env("TRACEFOUNDRY_API_KEY");
  let otlpEndpoint = options.otlpEndpoint ?? env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  if (!otlpEndpoint && env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
    otlpEndpoint = `${stripSlash(env("OTEL_EXPORTER_OTLP_ENDPOINT"))}/v1/traces`;
  }
  if (!otlpEndpoint && apiUrl) otlpEndpoint = `${apiUrl}/otlp/v1/traces`;
  const headers: Record<string, string> = options.otlpHeaders
    ? { ...options.otlpHeaders }
    : {
        ...parseKeyValues(env("OTEL_EXPORTER_OTLP_HEADERS")),
        ...parseKeyValues(env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")),
      };
  const hasAuth = Object.keys(headers).some((k) => k.toLowerCase() === "authorization");
  // The key goes only to the TraceFoundry server itself, never to a third-party collector.
  if (!hasAuth && apiKey && otlpEndpoint && apiUrl && sameOrigin(otlpEndpoint, apiUrl)) {
    headers["Authorization"] = `Bearer ${apiKey}`;
  }

  const resourceAttributes: Attributes = { ...(options.resourceAttributes ?? {}) };
  if (options.serviceName) resourceAttributes["service.name"] = options.serviceName;
  if (options.environment) {
    resourceAttributes["deployment.environment"] = options.environment;
    resourceAttributes["deployment.environment.name"] = options.environment;
  }
  const captureEnv = env("TRACEFOUNDRY_CAPTURE_PAYLOADS").toLowerCase();
  const capturePayloads =
    options.capturePayloads ?? !["0", "false", "no", "off"].includes(captureEnv);
  return {
    apiUrl,
    apiKey,
    otlpEndpoint,
    otlpHeaders: headers,
    capturePayloads,
    maxPayloadChars: positive(options.maxPayloadChars, 65536),
    requestTimeoutMs: positive(options.requestTimeoutMs, 5000),
    exportTimeoutMs: positive(options.exportTimeoutMs, 10000),
    flushTimeoutMs: positive(options.flushTimeoutMs, 10000),
    eventBatchSize: positive(options.eventBatchSize, 100, 1000),
    eventFlushIntervalMs: positive(options.eventFlushIntervalMs, 1000),
    maxQueuedEvents: positive(options.maxQueuedEvents, 10000),
    maxQueuedChars: positive(options.maxQueuedChars, 16 * 1024 * 1024),
    maxEventRetries: options.maxEventRetries === 0 ? 0 : positive(options.maxEventRetries, 5),
    spanExportDelayMs: positive(options.spanExportDelayMs, 1000),
    resourceAttributes,
  };
}

function buildProvider(config: ResolvedConfig): NodeTracerProvider {
  const fromEnv = detectResources({ detectors: [envDetector] });
  const resource = defaultResource()
    .merge(fromEnv)
    .merge(resourceFromAttributes(config.resourceAttributes));
  const spanProcessors: SpanProcessor[] = [new RunIdSpanProcessor()];
  if (config.otlpEndpoint) {
    const exporter = new OTLPTraceExporter({
      url: config.otlpEndpoint,
      headers: config.otlpHeaders,
      timeoutMillis: config.exportTimeoutMs,
    });
    spanProcessors.push(
      new BatchSpanProcessor(exporter, {
        scheduledDelayMillis: config.spanExportDelayMs,
        exportTimeoutMillis: config.exportTimeoutMs,
      }),
    );
  }
  return new NodeTracerProvider({ resource, spanProcessors });
}

/**
 * Configure the SDK (safe to call again: the previous provider of the SDK's own is flushed and
 * shut down in the background). Never throws.
 */
export function configure(options: TraceFoundryOptions = {}): void {
  try {
    const config = resolveConfig(options);
    const previous = state;
    let ownProvider: NodeTracerProvider | null = null;
    let provider: TracerProvider;
    if (options.tracerProvider) {
      provider = options.tracerProvider;
    } else {
      ownProvider = buildProvider(config);
      provider = ownProvider;
    }
    if (options.registerGlobal !== false) {
      if (!contextManagerSet) {
        contextManagerSet = true;
        context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      }
      if (ownProvider) {
        if (globalIsOurs) trace.disable(); // ours was global: replace it
        // false (and a diag message) when the application registered a provider of its own
        globalIsOurs = trace.setGlobalTracerProvider(ownProvider);
      }
    }
    state = { config, tracer: provider.getTracer(SDK_NAME, SDK_VERSION), ownProvider };
    if (previous?.ownProvider) {
      previous.ownProvider.shutdown().catch((error) => diag.debug("tracefoundry: shutdown", error));
    }
  } catch (error) {
    diag.warn("tracefoundry: configure failed", error);
  }
}

function current(): State {
  if (state === null) configure();
  if (state === null) {
    // configure failed: keep going with the API's tracer (no-op unless the app has a provider)
    state = { config: resolveConfig(), tracer: trace.getTracer(SDK_NAME, SDK_VERSION), ownProvider: null };
  }
  return state;
}

export function getConfig(): ResolvedConfig {
  return current().config;
}

export function getTracer(): Tracer {
  return current().tracer;
}

/** The SDK's own provider, when it built one. */
export function getOwnProvider(): NodeTracerProvider | null {
  return current().ownProvider;
}
