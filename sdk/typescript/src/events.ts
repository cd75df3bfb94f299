/**
 * Run events over HTTP in background batches: one sender per run, a bounded queue (in events
 * and in JSON characters; events past either bound are dropped and counted), batches of at most `eventBatchSize` sent at least every
 * `eventFlushIntervalMs`, one request at a time, retried with exponential backoff (or the
 * server's `Retry-After`) on 429/503 and network errors. `flush(timeout)` sends what is queued
 * within a deadline; `close()` drops the rest. Nothing here throws.
 */

import { diag } from "@opentelemetry/api";

import { apiRequest, retryable } from "./api.js";
import type { ResolvedConfig } from "./config.js";
import { activity } from "./context.js";
import type { RunEvent } from "./context.js";

const MAX_BACKOFF_MS = 5000;
const MAX_RETRY_AFTER_MS = 30000;

/** Senders with work in hand, for `flush()` of the whole SDK. */
export const liveSenders = new Set<EventSender>();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, Math.max(0, ms));
    timer.unref?.();
  });
}

export interface SenderStats {
  queued: number;
  sent: number;
  dropped: number;
}

export class EventSender {
  private queue: RunEvent[] = [];
  private sizes: number[] = []; // JSON length of each queued event
  private queuedChars = 0;
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | null = null;
  private closed = false;
  private deadline = Infinity; // while flushing: when to give up
  sent = 0;
  dropped = 0;

  constructor(
    readonly runId: string,
    private readonly config: ResolvedConfig,
  ) {}

  stats(): SenderStats {
    return { queued: this.queue.length, sent: this.sent, dropped: this.dropped };
  }

  add(event: RunEvent): void {
    try {
      if (this.closed) {
        this.dropped += 1;
        return;
      }
      const size = JSON.stringify(event).length;
      if (
        this.queue.length >= this.config.maxQueuedEvents ||
        this.queuedChars + size > this.config.maxQueuedChars
      ) {
        this.dropped += 1;
        return;
      }
      this.queue.push(event);
      this.sizes.push(size);
      this.queuedChars += size;
      activity.dirty = true;
      liveSenders.add(this);
      if (this.queue.length >= this.config.eventBatchSize) void this.kick();
      else this.schedule();
    } catch (error) {
      diag.debug("tracefoundry: event not queued", error);
    }
  }

  private schedule(): void {
    if (this.timer || this.inflight) return; // a running drain takes the new events too
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.kick();
    }, this.config.eventFlushIntervalMs);
    this.timer.unref?.();
  }

  private kick(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.inflight) {
      this.inflight = this.drain()
        .catch((error) => diag.debug("tracefoundry: event drain failed", error))
        .finally(() => {
          this.inflight = null;
          if (this.queue.length && !this.closed) this.schedule();
          else if (!this.queue.length) liveSenders.delete(this);
        });
    }
    return this.inflight;
  }

  private async drain(): Promise<void> {
    while (this.queue.length && !this.closed) {
      const batch = this.queue.splice(0, this.config.eventBatchSize);
      for (const size of this.sizes.splice(0, batch.length)) this.queuedChars -= size;
      await this.send(batch);
    }
  }

  /** Send one batch, retrying; what cannot be sent is counted as dropped. */
  private async send(batch: RunEvent[]): Promise<void> {
    const path = `/api/v1/runs/${encodeURIComponent(this.runId)}/events`;
    let backoff = 250;
    for (let attempt = 0; ; attempt += 1) {
      const left = this.deadline - Date.now();
      if (this.closed || left <= 0) break;
      const result = await apiRequest("POST", path, batch, Math.min(this.config.requestTimeoutMs, left));
      if (result.ok) {
        this.sent += batch.length;
        return;
      }
      if (result.status === 413 && batch.length > 1) {
        // Over the server's request size: send it in halves.
        const half = Math.ceil(batch.length / 2);
        await this.send(batch.slice(0, half));
        await this.send(batch.slice(half));
        return;
      }
      if (result.status === 400) {
        // All or nothing on the server: leave out the events it names, send the others.
        const bad = badIndexes(result.data, batch.length);
        if (bad.size && bad.size < batch.length && attempt < this.config.maxEventRetries) {
          this.dropped += bad.size;
          batch = batch.filter((_, i) => !bad.has(i));
          continue;
        }
        break;
      }
      if (!retryable(result) || attempt >= this.config.maxEventRetries) break;
      const jitter = 0.8 + Math.random() * 0.4;
      const wait =
        result.retryAfterMs !== undefined
          ? Math.min(result.retryAfterMs, MAX_RETRY_AFTER_MS)
          : Math.min(backoff, MAX_BACKOFF_MS) * jitter;
      backoff *= 2;
      if (Date.now() + wait >= this.deadline) break;
      await sleep(wait);
    }
    this.dropped += batch.length;
    diag.debug(`tracefoundry: ${batch.length} run event(s) of ${this.runId} not sent`);
  }

  /** Send everything queued, waiting at most `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    try {
      const deadline = Date.now() + Math.max(0, timeoutMs);
      this.deadline = Math.min(this.deadline, deadline);
      while ((this.queue.length || this.inflight) && !this.closed) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        await Promise.race([this.kick(), sleep(left)]);
      }
    } catch (error) {
      diag.debug("tracefoundry: event flush failed", error);
    } finally {
      this.deadline = Infinity;
    }
  }

  /** Stop: what is still queued is dropped (counted). */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dropped += this.queue.length;
    this.queue = [];
    this.sizes = [];
    this.queuedChars = 0;
    liveSenders.delete(this);
  }
}

function badIndexes(data: unknown, size: number): Set<number> {
  const out = new Set<number>();
  try {
    const errors = (data as { error?: { details?: { errors?: unknown } } })?.error?.details?.errors;
    if (Array.isArray(errors)) {
      for (const item of errors) {
        const index = (item as { index?: unknown })?.index;
        if (typeof index === "number" && Number.isInteger(index) && index >= 0 && index < size) out.add(index);
      }
    }
  } catch {
    // no usable details: the batch is dropped whole
  }
  return out;
}
