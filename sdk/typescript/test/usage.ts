// Compiled (not run) by `npm run build`: the published declarations type-check the README's uses.
import http from "node:http";

import {
  configure,
  currentRun,
  flush,
  llmCall,
  shutdown,
  toolCall,
  traceAgentRun,
  traceHandler,
  traceMiddleware,
} from "../dist/index.js";
import type { AgentRun, LlmCall, ToolCall } from "../dist/index.js";

configure({ apiUrl: "http://127.0.0.1:8000", apiKey: "tf_x", serviceName: "svc", environment: "dev" });

const server = http.createServer(
  traceHandler(async (_req, res) => {
    const answer: { text: string; n: number } = await traceAgentRun(
      { kind: "agent.session", name: "demo", input: { q: "hi" } },
      async (run: AgentRun) => {
        run.note("start", { step: 1 });
        run.log("line", "stderr");
        run.progress(1, 2, "half");
        const text: string = await llmCall(
          { model: "gpt-4o-mini", provider: "openai", prompt: "hi", operation: "chat" },
          async (call: LlmCall) => {
            call.retry(1, "429");
            call.timeout(30);
            const headers: Record<string, string> = call.traceHeaders();
            void headers;
            call.recordResponse({ text: "hello", responseModel: "m", inputTokens: 1, outputTokens: 2, finishReasons: ["stop"] });
            return "hello";
          },
        );
        const n: number = await toolCall({ name: "count", args: { text } }, async (call: ToolCall) => {
          call.recordResult({ length: text.length });
          return text.length;
        });
        const id: string | undefined = currentRun()?.runId;
        void id;
        return { text, n };
      },
    );
    res.end(JSON.stringify(answer));
  }),
);

const middleware: (req: http.IncomingMessage, res: http.ServerResponse, next: (error?: unknown) => void) => void =
  traceMiddleware({ spanName: (req) => `${req.method} /route` });
void middleware;
void server;
void flush(1000).then(() => shutdown());

// A handler typed with a request subclass (as frameworks declare them) keeps its types.
interface AppRequest extends http.IncomingMessage {
  user?: string;
}
const typed: (req: AppRequest, res: http.ServerResponse) => void = traceHandler((req: AppRequest, res) => {
  res.end(req.user ?? "anonymous");
});
void typed;
