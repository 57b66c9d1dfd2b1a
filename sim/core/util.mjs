// Small helpers shared by the core and the family modules.

import crypto from 'node:crypto';
import { CODE_MSG, SIM_MARKERS } from './constants.mjs';

export function isHttpUrl(s) {
  if (typeof s !== 'string' || !s) return false;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

export function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function deepMerge(target, patch) {
  for (const [k, v] of Object.entries(patch || {})) {
    if (isPlainObject(v) && isPlainObject(target[k])) deepMerge(target[k], v);
    else target[k] = v;
  }
  return target;
}

export function newTaskId() {
  return crypto.randomBytes(16).toString('hex');
}

export function parseMarkers(prompt) {
  const found = new Set();
  if (typeof prompt !== 'string') return found;
  const re = /\[sim:([a-z_]+)\]/g;
  let m;
  while ((m = re.exec(prompt))) if (SIM_MARKERS.includes(m[1])) found.add(m[1]);
  return found;
}

export function envelope(code, msg, data = null) {
  return { code, msg: msg ?? CODE_MSG[code] ?? 'Error', data };
}

