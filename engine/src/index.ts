export {
  DEFAULT_NATS_URL,
  type EngineConfig,
  type EngineConfigInput,
  resolveEngineConfig,
  splitServers,
} from "./config.js";
export { createEngine, type Engine, type EngineDeps } from "./engine.js";
export { type ApiCaller, ApiTokens, registerProtectedRoutes } from "./http/api.js";
export { appendEvent, lastSequence } from "./log/append.js";
export { connectNats } from "./nats/connect.js";
export { type RebuildReport, rebuildProjection, type VerifyReport, verifyProjection } from "./projector/rebuild.js";
export { SchedulerCore } from "./scheduler/core.js";
export { factsOfState, summarizeQueues } from "./scheduler/inspect.js";
