// D1 in as few wasm crossings as possible (src/adapters/d1.rs): a statement is
// prepared and bound in one call, and a result comes back as one string:
// `rows_read rows_written changes` and, for queries, a line break and the
// rows as JSON. A batch answers with one such count line per statement.

export function d1_statement(db, sql, args) {
  return db.prepare(sql).bind(...args);
}

function counts(result) {
  const meta = result.meta || {};
  return `${meta.rows_read || 0} ${meta.rows_written || 0} ${meta.changes || 0}`;
}

export async function d1_all(statement) {
  const result = await statement.all();
  return counts(result) + '\n' + JSON.stringify(result.results || []);
}

export async function d1_run(statement) {
  return counts(await statement.run());
}

export async function d1_batch(db, statements) {
  const results = await db.batch(statements);
  return results.map(counts).join('\n');
}
