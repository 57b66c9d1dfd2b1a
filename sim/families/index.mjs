// The Kie API families the simulator serves, and the interface a family module implements.
//
// A family module's default export:
//   id                         the task.family value ('jobs' | '4o' | 'flux')
//   prices                     default prices by model id (merged into config.prices; a table is keyed
//                              by resolution or nVariants)
//   routes                     [{ method, path, cls, handler(core, ctx) }]; cls is the endpoint class
//                              stats count and faults target: 'create' | 'record' | 'download'
//   failure(kind)              task fields for a failure; kind: media | content_policy | internal |
//                              upstream_timeout. Returns { failCode, failMsg } or { errorCode, failMsg, failCode }
//   results(core, task, now)   on success, register the result files (core/tasks.mjs registerResult)
//   data(core, task)           the record-info `data` view
//   callbackBody(core, task, override)
//                              the callback body; override { state } forces success|fail (manual sends),
//                              { stale: true } a "still running" copy (the reorder fault)
//   inputsFetched(core, task)  optional: called once the inputs are fetched, before the task finishes
//
// Create handlers validate the request and call core/tasks.mjs createTask; everything after that
// (schedule, input fetching, refunds, files, callback delivery) is the core's.

import jobs from './jobs.mjs';
import gpt4o from './gpt4o.mjs';
import flux from './flux.mjs';

export const FAMILIES = [jobs, gpt4o, flux];
