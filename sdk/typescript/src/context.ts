/**
 * The run a piece of code belongs to, carried through async calls with AsyncLocalStorage (Node's
 * own, independent of whichever OpenTelemetry context manager the application registered), and
 * the span processor that stamps `tracefoundry.run_id` on every span started inside a run.
 */

import { AsyncLocalStorage } from "node:async_hooks";

import type { Context } from "@opentelemetry/api";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace-base";

export const RUN_ID_ATTRIBUTE = "tracefoundry.run_id";

/** Where helpers inside a run send their run events. */
export interface RunEvent {
  type: string;
  level?: "debug" | "info" | "warn" | "error";
  payload?: Record<string, unknown>;
  correlation_id?: string;
  causation_id?: string;
  step_id?: string;
}

export interface RunScope {
  readonly runId: string | undefined;
  emit(event: RunEvent): void;
}

export const runStore = new AsyncLocalStorage<RunScope>();

export function currentScope(): RunScope | undefined {
  try {
    return runStore.getStore();
  } catch {
    return undefined;
  }
}

/** Set when a span ended or an event was queued since the last flush (see the exit hook). */
export const activity = { dirty: false };

export class RunIdSpanProcessor implements SpanProcessor {
  onStart(span: Span, _parentContext: Context): void {
    try {
      const runId = currentScope()?.runId;
      if (runId) span.setAttribute(RUN_ID_ATTRIBUTE, runId);
    } catch {
      // never fail a span over its run id
    }
  }

  onEnd(_span: ReadableSpan): void {
    activity.dirty = true;
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
