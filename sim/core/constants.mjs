// Constants and configuration shared by the whole simulator.
// Business codes and their usual messages follow the table in docs.kie.ai (see ../shared/kie-api.md §1).

export const MB = 1024 * 1024;

export const CODE_MSG = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Insufficient credits',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Task timed out',
  422: 'Validation error',
  429: 'Too many requests',
  433: 'Sub-key usage exceeds its limit',
  455: 'Service is currently unavailable due to maintenance',
  500: 'Server Error - An unexpected error occurred while processing the request',
  501: 'Generation failed',
  505: 'The feature is disabled',
  550: 'Connection Denied',
};

export const SIM_MARKERS = ['content_policy', 'internal', 'upstream_timeout', 'empty_result', 'not_image', 'missing_result', 'slow', 'never'];
export const OUTBOUND_UA = 'KieAI-Webhook/1.0';
export const FETCH_UA = 'Mozilla/5.0 (compatible; KieAI-Fetcher/1.0)';

/** Failure message every family uses when the upstream model times out (observed during outages). */
export const UPSTREAM_TIMEOUT_MSG = 'upstream API service timed out';

/**
 * The configuration a simulator starts with, and returns to on reset.
 * familyPrices: default prices by model id, contributed by the family modules; opts.prices overrides them.
 */
export function defaultConfig(opts = {}, familyPrices = {}) {
  return {
    apiKey: opts.apiKey ?? 'sim-key',
    hmacKey: opts.hmacKey ?? null,
    stepMs: opts.stepMs ?? 150,
    latencyMs: opts.latencyMs ?? 0,
    credits: opts.credits ?? 10000,
    publicUrl: opts.publicUrl ?? null,
    callbacks: {
      duplicates: 0,
      delayMs: 0,
      drop: false,
      reorder: false,
      maxAttempts: 3,
      retryDelayMs: 1000,
      timeoutMs: 15000,
      userAgent: OUTBOUND_UA,
      ...(opts.callbacks || {}),
    },
    rateLimit: { max: 20, windowMs: 10000, enabled: true, ...(opts.rateLimit || {}) },
    rateLimitAsHttp429: opts.rateLimitAsHttp429 ?? false,
    authAsHttp401: opts.authAsHttp401 ?? false,
    userAgentCheck: opts.userAgentCheck ?? false,
    strictInputKeys: opts.strictInputKeys ?? false,
    doubleEncodeParamInput: opts.doubleEncodeParamInput ?? false,
    inputFetchTimeoutMs: opts.inputFetchTimeoutMs ?? 10000,
    uploadFetchTimeoutMs: opts.uploadFetchTimeoutMs ?? 30000,
    outcome: opts.outcome ?? null,
    // How result files are served: padBytes of trailing bytes after the image (a large result),
    // shape 'fake_png' (a PNG signature, then zeros), chunked (no Content-Length), or every
    // result URL replaced by `url` (a hostile or broken Kie answer).
    results: { padBytes: 0, shape: 'image', chunked: false, url: null, ...(opts.results || {}) },
    prices: {
      ...structuredClone(familyPrices),
      ...(opts.prices || {}),
    },
  };
}

export function newStats() {
  return {
    requests: 0,
    create: 0,
    record: 0,
    credit: 0,
    upload: 0,
    tempfile: 0,
    download: 0,
    callbacksSent: 0,
    faultsApplied: 0,
    rateLimited: 0,
    recordByTask: {},
  };
}
