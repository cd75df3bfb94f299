/**
 * Trace-context propagation for Node HTTP servers: a wrapper for `http.createServer` request
 * handlers and an Express-style `(req, res, next)` middleware. Each extracts the W3C
 * `traceparent`/`tracestate` of the request, starts a SERVER span continuing that trace (a new
 * trace without one), makes it the active span for the handler and what it awaits, and ends it
 * when the response is finished or the connection closes.
 */

import type { IncomingMessage, ServerResponse } from "node:http";

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, diag, trace } from "@opentelemetry/api";
import type { Attributes, Context, Span } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

import { getTracer } from "./config.js";
import { errorInfo, exceptionOf, wellFormed } from "./payload.js";

const propagator = new W3CTraceContextPropagator();
const TRACED = Symbol.for("tracefoundry.traced");

export interface MiddlewareOptions {
  /** The span name (default `METHOD /path`, without the query string). */
  spanName?: (req: IncomingMessage) => string;
  /** More attributes of the server span. */
  attributes?: (req: IncomingMessage) => Attributes;
  /** Ignore an incoming `traceparent` and always start a new trace (for public endpoints). */
  ignoreIncoming?: boolean;
}

type Next = (error?: unknown) => void;

const getter = {
  keys: (carrier: IncomingMessage["headers"]) => Object.keys(carrier),
  get: (carrier: IncomingMessage["headers"], key: string) => carrier[key],
};

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "/";
  const at = url.search(/[?#]/);
  return at === -1 ? url : url.slice(0, at);
}

/** The context a request's headers carry (the root context when they carry none). */
export function extractContext(headers: IncomingMessage["headers"]): Context {
  try {
    return propagator.extract(ROOT_CONTEXT, headers ?? {}, getter);
  } catch {
    return ROOT_CONTEXT;
  }
}

/** `traceparent` (and `tracestate`) of the active span, for an outgoing request. */
export function injectTraceHeaders(headers: Record<string, string> = {}): Record<string, string> {
  try {
    propagator.inject(context.active(), headers, {
      set: (carrier, key, value) => {
        carrier[key] = value;
      },
    });
  } catch (error) {
    diag.debug("tracefoundry: trace headers not injected", error);
  }
  return headers;
}

function startServerSpan(req: IncomingMessage, res: ServerResponse, options: MiddlewareOptions): Context | null {
  try {
    const marked = req as IncomingMessage & { [TRACED]?: Context };
    if (marked[TRACED]) return marked[TRACED]; // traced already (wrapper and middleware both)
    const parent = options.ignoreIncoming ? ROOT_CONTEXT : extractContext(req.headers);
    const method = (req.method ?? "GET").toUpperCase();
    const path = pathOf(req);
    const attributes: Attributes = {
      "http.request.method": method,
      "url.path": wellFormed(path).slice(0, 2048),
      "url.scheme": (req.socket as { encrypted?: boolean } | undefined)?.encrypted ? "https" : "http",
      ...(options.attributes ? options.attributes(req) : {}),
    };
    const host = req.headers?.host;
    if (host) attributes["server.address"] = wellFormed(host.replace(/:\d+$/, "")).slice(0, 255);
    const agent = req.headers?.["user-agent"];
    if (agent) attributes["user_agent.original"] = wellFormed(agent).slice(0, 512);
    if (req.socket?.remoteAddress) attributes["client.address"] = req.socket.remoteAddress;
    const name = options.spanName ? options.spanName(req) : `${method} ${path}`;
    const span = getTracer().startSpan(wellFormed(String(name)).slice(0, 200), { kind: SpanKind.SERVER, attributes }, parent);
    const active = trace.setSpan(parent, span);
    marked[TRACED] = active;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      try {
        const status = res.statusCode;
        span.setAttribute("http.response.status_code", status);
        if (!res.writableFinished) span.setAttribute("tracefoundry.aborted", true);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `HTTP ${status}` });
        span.end();
      } catch (error) {
        diag.debug("tracefoundry: server span not ended", error);
      }
    };
    res.once("finish", end);
    res.once("close", end);
    return active;
  } catch (error) {
    diag.warn("tracefoundry: request not traced", error);
    return null;
  }
}

function recordError(active: Context, error: unknown): void {
  try {
    const span: Span | undefined = trace.getSpan(active);
    if (!span) return;
    const info = errorInfo(error, 2000);
    span.recordException(exceptionOf(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: info.message.slice(0, 1000) });
  } catch {
    // the handler's error is what matters
  }
}

/**
 * Wrap a request handler for `http.createServer(traceHandler(handler))`. The handler's return
 * value (a promise too) is passed through; what it throws is recorded on the span and re-thrown.
 */
export function traceHandler<Req extends IncomingMessage, Res extends ServerResponse, R>(
  handler: (req: Req, res: Res) => R,
  options: MiddlewareOptions = {},
): (req: Req, res: Res) => R {
  const wrapped = function (this: unknown, req: Req, res: Res): R {
    const active = startServerSpan(req, res, options);
    if (!active) return handler.call(this, req, res);
    return context.with(active, () => {
      let result: R;
      try {
        result = handler.call(this, req, res);
      } catch (error) {
        recordError(active, error);
        throw error;
      }
      const thenable = result as unknown as PromiseLike<unknown> | null | undefined;
      if (thenable && typeof thenable.then === "function") {
        // The same outcome for whoever awaits it, the rejection recorded on the way.
        return thenable.then(undefined, (error: unknown) => {
          recordError(active, error);
          throw error;
        }) as unknown as R;
      }
      return result;
    });
  };
  return wrapped;
}

/**
 * Express-style middleware: `app.use(traceMiddleware())`. Later middleware and route handlers
 * run with the server span active.
 */
export function traceMiddleware(options: MiddlewareOptions = {}) {
  return function tracefoundryMiddleware(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const active = startServerSpan(req, res, options);
    if (!active) {
      next();
      return;
    }
    context.with(active, () => next());
  };
}
