/**
 * Requests to the TraceFoundry HTTP API: JSON, the API key as a bearer token, a bounded timeout
 * (AbortSignal.timeout), never thrown errors, and no spans of their own (tracing is suppressed
 * so that fetch instrumentation of the application does not trace the SDK's traffic).
 */

import { context, diag } from "@opentelemetry/api";
import { suppressTracing } from "@opentelemetry/core";

import { getConfig } from "./config.js";
import { SDK_NAME, SDK_VERSION } from "./version.js";

export interface ApiResult {
  ok: boolean;
  /** HTTP status; 0 when no answer came (refused, reset, timed out, not configured). */
  status: number;
  data: unknown;
  /** From `Retry-After`, when the server sent one. */
  retryAfterMs?: number;
}

function retryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

export async function apiRequest(
  method: string,
  path: string,
  body?: unknown,
  timeoutMs?: number,
): Promise<ApiResult> {
  try {
    const config = getConfig();
    if (!config.apiUrl) return { ok: false, status: 0, data: null };
    const headers: Record<string, string> = {
      Accept: "application/json",
      "User-Agent": `${SDK_NAME}/${SDK_VERSION}`,
    };
    if (config.apiKey) headers["Authorization"] = `Bearer ${config.apiKey}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const timeout = Math.max(1, Math.floor(timeoutMs ?? config.requestTimeoutMs));
    const response = await context.with(suppressTracing(context.active()), () =>
      fetch(`${config.apiUrl}${path}`, {
        method,
        headers,
        body: payload,
        signal: AbortSignal.timeout(timeout),
      }),
    );
    const text = await response.text();
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { raw: text.slice(0, 1000) };
      }
    }
    if (!response.ok) {
      diag.debug(`tracefoundry: ${method} ${path} -> ${response.status}`, text.slice(0, 500));
    }
    return {
      ok: response.ok,
      status: response.status,
      data,
      retryAfterMs: retryAfter(response.headers.get("retry-after")),
    };
  } catch (error) {
    diag.debug(`tracefoundry: ${method} ${path} failed`, error);
    return { ok: false, status: 0, data: null };
  }
}

/** Whether a failed request is worth sending again: no answer, throttled, busy, a proxy's 502/504. */
export function retryable(result: ApiResult): boolean {
  return [0, 429, 502, 503, 504].includes(result.status);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    timer.unref?.();
  });
}

/**
 * A lifecycle request (create, start, succeed, fail), sent again — up to `attempts` times in
 * all — while the server answers 429 or 503 (it did nothing then), waiting its `Retry-After` or
 * a short backoff, never more than `maxWaitMs` in all.
 */
export async function apiRequestPatiently(
  method: string,
  path: string,
  body?: unknown,
  attempts = 3,
  maxWaitMs = 3000,
): Promise<ApiResult> {
  const deadline = Date.now() + maxWaitMs;
  let backoff = 200;
  let result = await apiRequest(method, path, body);
  for (let i = 1; i < attempts && (result.status === 429 || result.status === 503); i += 1) {
    const wait = Math.min(result.retryAfterMs ?? backoff, 2000);
    backoff *= 2;
    if (Date.now() + wait > deadline) break;
    await pause(wait);
    result = await apiRequest(method, path, body);
  }
  return result;
}
