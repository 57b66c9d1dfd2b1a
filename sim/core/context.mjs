// The simulator's shared context: configuration, state, timers and outbound requests in one object
// (`core`), which every core and family function takes as its first argument.

import crypto from 'node:crypto';
import { defaultConfig, newStats } from './constants.mjs';

/**
 * families: the family modules (see ../families/index.mjs for the interface they implement).
 * opts: the options given to startKieSim; reset returns to them.
 */
export function createCore(opts, families) {
  const startOpts = { ...opts };
  const familyPrices = Object.assign({}, ...families.map((f) => f.prices));
  const core = {
    startOpts,
    families: new Map(families.map((f) => [f.id, f])),
    familyPrices,
    logFn: typeof opts.log === 'function' ? opts.log : opts.log ? (o) => process.stdout.write(`${JSON.stringify(o)}\n`) : null,
    linkSecret: crypto.randomBytes(16), // signs download-url links
    state: {
      config: defaultConfig(startOpts, familyPrices),
      credits: 0,
      tasks: new Map(),
      files: new Map(), // tempfile path (after /tempfile/) -> descriptor
      faults: [],
      callbacks: [], // delivery log
      stats: newStats(),
      createTimes: [], // accepted creates (rate-limit window)
      epoch: 0, // bumped by reset/close: timers and deliveries of older tasks stop
    },
    timers: new Set(),
    outbound: new Set(), // in-flight outbound requests (aborted on reset/close)
    hanging: new Set(), // responses held open by the "timeout" fault
    closed: false,
    faultSeq: 0,
    url: null, // set once the server listens
  };
  core.state.credits = core.state.config.credits;
  return core;
}

/** Run fn after ms unless the simulator is closed; reset/close clear pending timers. */
export function later(core, ms, fn) {
  if (core.closed) return null;
  const t = setTimeout(() => {
    core.timers.delete(t);
    fn();
  }, Math.max(0, ms));
  core.timers.add(t);
  return t;
}

export function sleep(core, ms) {
  return new Promise((r) => (ms > 0 ? later(core, ms, r) || r() : r()));
}

/** Base of the URLs the simulator hands out (result files, uploads, download links). */
export function baseUrl(core) {
  return core.state.config.publicUrl || core.url;
}

export function log(core, o) {
  if (core.logFn) core.logFn({ time: new Date().toISOString(), ...o });
}

/** A task stays live until the simulator is reset or closed. */
export function alive(core, task) {
  return !core.closed && task.epoch === core.state.epoch;
}

/** Time per lifecycle step; the [sim:slow] marker makes it ten times longer. */
export function stepDelay(core, task) {
  return (Number(core.state.config.stepMs) || 0) * (task.markers.has('slow') ? 10 : 1);
}

export function familyOf(core, task) {
  return core.families.get(task.family);
}

export const terminal = (s) => s === 'success' || s === 'fail';
