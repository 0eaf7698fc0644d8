export * from './propagation.js';
export * from './vectorClock.js';
export { newSpanId, newTraceId, traceIdToUuid, uuidToTraceId } from './ids.js';
export { Raceway, TrackedMutex, recordedUrl, type AxiosLike, type Middleware, type MiddlewareRequest } from './raceway.js';
export type { RacewayContext, UpstreamInfo } from './context.js';
export type {
  Access,
  EventKind,
  LockMode,
  Logger,
  RacewayConfig,
  RacewayEvent,
  ResolvedConfig,
  SpanKind,
} from './config.js';
export type { Stats } from './stats.js';
export { parseRetryAfter } from './exporter.js';

import type { RacewayConfig } from './config.js';
import { Raceway } from './raceway.js';

/** Creates a Raceway instance (never throws). */
export function createRaceway(config: RacewayConfig = {}): Raceway {
  return new Raceway(config);
}

/** Express middleware of an instance: `app.use(racewayExpress(raceway))`. */
export function racewayExpress(raceway: Raceway) {
  return raceway.middleware();
}
