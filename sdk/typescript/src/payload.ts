/**
 * Captured values: JSON-safe, well-formed text, cut to a size. The server moves long values to
 * its payload store (span attributes such as `gen_ai.prompt`, event payload strings); the cap
 * here bounds what the agent process holds and sends.
 */

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text the server accepts: no NUL, no lone surrogate (either would make it refuse a whole request). */
export function wellFormed(text: string): string {
  return text.replace(/\u0000/g, "\uFFFD").replace(LONE_SURROGATE, "\uFFFD");
}

/** Cut to `max` characters (never inside a surrogate pair), saying how much was cut. */
export function capText(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…[truncated ${text.length - end} chars]`;
}

function replacer(): (key: string, value: unknown) => unknown {
  const seen = new WeakSet<object>();
  return (_key, value) => {
    if (typeof value === "string") return wellFormed(value);
    if (typeof value === "bigint") return value.toString();
    if (value instanceof Error) return { type: value.name, message: value.message };
    if (typeof value === "object" && value !== null) {
      if (seen.has(value)) return "[circular]";
      seen.add(value);
    }
    return value;
  };
}

/** JSON text of any value (strings as they are); never throws. */
export function toText(value: unknown): string {
  if (typeof value === "string") return wellFormed(value);
  try {
    const text = JSON.stringify(value, replacer());
    return text === undefined ? String(value) : text;
  } catch {
    try {
      return String(value);
    } catch {
      return "[unserializable]";
    }
  }
}

/** A captured value as span attribute text: well-formed and capped. */
export function attributeText(value: unknown, max: number): string {
  return capText(wellFormed(toText(value)), max);
}

/**
 * A value safe to put in a JSON request: structure kept when its JSON fits in `max`
 * characters, else the capped JSON text. `undefined` stays undefined.
 */
export function jsonValue(value: unknown, max: number): unknown {
  if (value === undefined) return undefined;
  if (typeof value === "string") return capText(wellFormed(value), max);
  let text: string | undefined;
  try {
    text = JSON.stringify(value, replacer());
  } catch {
    text = undefined;
  }
  if (text === undefined) return capText(wellFormed(toText(value)), max);
  if (text.length > max) return capText(text, max);
  try {
    return JSON.parse(text);
  } catch {
    return capText(text, max);
  }
}

/** `{type, message, stack}` of a thrown value, the stack cut short. */
export function errorInfo(error: unknown, stackChars = 4000): { type: string; message: string; stack?: string } {
  if (error instanceof Error) {
    const type = error.name && error.name !== "Error" ? error.name : error.constructor?.name || "Error";
    const info: { type: string; message: string; stack?: string } = {
      type: wellFormed(type).slice(0, 255),
      message: capText(wellFormed(String(error.message)), 4000),
    };
    if (typeof error.stack === "string") info.stack = capText(wellFormed(error.stack), stackChars);
    return info;
  }
  return { type: typeof error, message: capText(wellFormed(toText(error)), 4000) };
}

/**
 * What `span.recordException` should see: the error's type as its name (DOMException's legacy
 * numeric `code`, e.g. 23 for a TimeoutError, would otherwise become `exception.type`).
 */
export function exceptionOf(error: unknown): { name: string; message: string; stack?: string; code?: string } {
  const info = errorInfo(error, 8000);
  const out: { name: string; message: string; stack?: string; code?: string } = { name: info.type, message: info.message };
  if (info.stack) out.stack = info.stack;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code) out.code = wellFormed(code).slice(0, 255);
  return out;
}
