// The web page in a real browser (Chromium through playwright-core) against the
// real Worker in workerd and the Kie simulator: sign in, upload, generate,
// watch, history, a localised error, and the page's transfer size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requireChromium, launchChromium, SHOTS } from './chromium.mjs';
import { startStack, requireBuild, pngBytes, waitFor } from './harness.mjs';

const T = { timeout: 20000 };

let stack, browser;
before(async () => {
  requireChromium();
  requireBuild();
  stack = await startStack({ name: 'browser' });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close().catch(() => {});
  await stack?.close();
});

test('sign in, upload, generate, watch, history, localised insufficient-credits error', { timeout: 90000 }, async () => {
  const user = await stack.createUser(3, 'Ada Browser');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', acceptDownloads: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T.timeout);

  // Anything the page logs as an error (CSP violations included) fails the test.
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));
  // HTTP errors other than the expected 402 are problems too.
  page.on('response', (r) => { if (r.status() >= 400 && r.status() !== 402) problems.push(`${r.status()} ${r.url()}`); });

  // Transfer of the first load: the three files of the page.
  const sizes = new Map();
  const pending = [];
  page.on('response', (res) => {
    const p = new URL(res.url()).pathname;
    if (['/', '/app.js', '/app.css'].includes(p) && !sizes.has(p)) {
      sizes.set(p, 0);
      pending.push(res.body().then((b) => sizes.set(p, b.length)));
    }
  });

  const byId = (id) => page.getByTestId(id);
  const res = await page.goto(stack.url + '/');
  await page.locator('body[data-models="ready"]').waitFor(); // the model table is re-rendered once it loads
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'] || '', /script-src 'self'/);

  // Sign in.
  await byId('api-key').fill(user.key);
  await byId('signin-submit').click();
  await byId('user-name').filter({ hasText: 'Ada Browser' }).waitFor();
  await byId('credits').filter({ hasText: /^3 credits$/ }).waitFor();
  await Promise.all(pending);
  const transfer = [...sizes.values()].reduce((a, b) => a + b, 0);
  console.log('page-transfer-bytes', transfer);
  assert.equal(sizes.size, 3, `all three files loaded: ${[...sizes.keys()]}`);
  assert.ok(transfer < 100 * 1024, `page transfer ${transfer} bytes is under 100 KB`);

  // The key is kept for the next visit; no admin token anywhere.
  const stored = await page.evaluate(() => ({ ...localStorage }));
  assert.equal(stored['nb.key'], user.key);
  assert.ok(!JSON.stringify(stored).includes('admin'), 'no admin token in storage');

  // Create: an edit with one uploaded PNG.
  await byId('model').selectOption('nano-banana-edit');
  await byId('dropzone').waitFor();
  await byId('generate').filter({ hasText: '2 credits' }).waitFor();
  const png = path.join(tmpdir(), `browser-input-${process.pid}.png`);
  writeFileSync(png, pngBytes(48, 48));
  await byId('file-input').setInputFiles(png);
  await byId('preview').first().waitFor();
  assert.equal(await byId('preview').count(), 1);
  const prompt = 'Make the banana wear sunglasses';
  await byId('prompt').fill(prompt);
  await byId('prompt-count').filter({ hasText: `${prompt.length} / 5000` }).waitFor();
  await byId('generate').click();

  // Watch it finish; the result image really loads.
  await page.locator('[data-testid="watch"] #watch[data-state="succeeded"]').waitFor();
  const img = byId('result-image').first();
  await img.waitFor();
  assert.equal(await img.getAttribute('alt'), prompt);
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="result-image"]');
    return el && el.complete && el.naturalWidth > 0;
  }, null, T);
  const dl = byId('download').first();
  assert.ok((await dl.getAttribute('download'))?.endsWith('.png'), 'download link has a file name');
  assert.match(await dl.getAttribute('href'), /\/files\/out\//);
  assert.equal(await byId('open').first().getAttribute('target'), '_blank');
  const taskId = await page.locator('#watch').getAttribute('data-task-id');
  assert.match(taskId, /^tsk_/);
  await byId('credits').filter({ hasText: /^1 credit$/ }).waitFor();

  // History lists it; the running task is no longer kept once finished.
  const item = page.locator(`[data-testid="history-item"][data-task-id="${taskId}"]`);
  await item.waitFor();
  assert.equal(await item.getAttribute('data-state'), 'succeeded');
  assert.ok((await item.textContent()).includes(prompt));
  assert.equal(await page.evaluate(() => localStorage.getItem('nb.task')), null);

  // Kie fetched our input through the signed URL.
  const task = await stack.task(user.key, taskId);
  assert.equal(task.state, 'succeeded');
  assert.equal(task.inputs.length, 1);
  const simTask = await waitFor(() => stack.sim.state.tasks.get(task.provider_task_id), { what: 'simulator task' });
  assert.equal(simTask.inputsFetched.length, 1);
  assert.match(simTask.inputsFetched[0].url, /\/files\/in\//);
  assert.equal(simTask.inputsFetched[0].status, 200);
  assert.equal(simTask.inputsFetched[0].ok, true);

  await page.screenshot({ path: path.join(SHOTS, 'desktop-1280x800.png'), fullPage: true });

  // A second generation: 1 credit left, 2 needed.
  await byId('generate').click();
  const msg = byId('error-message');
  await msg.filter({ hasText: 'Not enough credits: this needs 2, you have 1.' }).waitFor();
  const rid = (await byId('error-request-id').textContent()).trim();
  assert.ok(rid.length > 4, 'the request id is shown');
  assert.equal(await byId('generate').isDisabled(), false, 'the button is usable again');

  // Switch to Chinese: the same error, localised, with the same request id.
  await byId('lang-toggle').click();
  await msg.filter({ hasText: '积分不足：需要 2 积分，您只有 1 积分。' }).waitFor();
  assert.equal((await byId('error-request-id').textContent()).trim(), rid);
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
  await page.screenshot({ path: path.join(SHOTS, 'desktop-zh-error.png'), fullPage: true });

  // Phone width: one column.
  await page.setViewportSize({ width: 390, height: 844 });
  const [create, watch] = await Promise.all([page.locator('#h-create').boundingBox(), page.locator('#h-watch').boundingBox()]);
  assert.ok(watch.y > create.y + 100 && Math.abs(watch.x - create.x) < 2, 'single column on a phone');
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `no horizontal scrolling (${wide}px)`);
  await page.screenshot({ path: path.join(SHOTS, 'phone-390x844.png'), fullPage: true });

  // Reload: still signed in, language remembered, history back.
  await page.reload();
  await byId('user-name').filter({ hasText: 'Ada Browser' }).waitFor();
  await page.locator(`[data-testid="history-item"][data-task-id="${taskId}"]`).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');

  // Nothing is lost on reload: a running task is resumed and watched to the end.
  const grant = await stack.admin('POST', `/api/admin/users/${user.id}/credits`, { amount: 4, reason: 'browser test' });
  assert.equal(grant.status, 200, grant.text);
  await byId('model').selectOption('nano-banana');
  await byId('dropzone').waitFor({ state: 'hidden' });
  await byId('prompt').fill('A slow banana [sim:slow]');
  await byId('generate').click();
  await page.locator('#watch[data-state="queued"], #watch[data-state="submitted"], #watch[data-state="generating"]').waitFor();
  await byId('error').waitFor({ state: 'hidden' });
  const slowId = await page.locator('#watch').getAttribute('data-task-id');
  assert.notEqual(slowId, taskId);
  assert.equal(await page.evaluate(() => localStorage.getItem('nb.task')), slowId);
  await page.reload();
  await page.locator(`#watch[data-task-id="${slowId}"]`).waitFor();
  await byId('progress').waitFor();
  await page.locator(`#watch[data-task-id="${slowId}"][data-state="succeeded"]`).waitFor();
  await byId('progress').waitFor({ state: 'hidden' });
  assert.equal(await byId('prompt').inputValue(), 'A slow banana [sim:slow]', 'the draft prompt survives a reload');

  // A task that fails shows its cause (in Chinese now) and gives the credits back.
  await byId('prompt').fill('A forbidden banana [sim:content_policy]');
  await byId('generate').click();
  await page.locator('#watch[data-state="failed"]').waitFor();
  await byId('task-error').filter({ hasText: '内容政策' }).waitFor();
  await byId('credits').filter({ hasText: /^3 积分$/ }).waitFor();
  const failedId = await page.locator('#watch').getAttribute('data-task-id');
  await page.locator(`[data-testid="history-item"][data-task-id="${failedId}"][data-state="failed"]`).filter({ hasText: '内容政策' }).waitFor();
  await byId('lang-toggle').click();
  await byId('task-error').filter({ hasText: 'content policy' }).waitFor();

  // Sign out forgets the key.
  await byId('signout').click();
  await byId('signin').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('nb.key')), null);

  assert.deepEqual(problems, [], 'no console errors or CSP violations');
  await ctx.close();
});

test('retries reuse the Idempotency-Key and charge once; files are checked in the page; zh from the browser language', { timeout: 120000 }, async () => {
  const user = await stack.createUser(10, '测试用户');
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'zh-CN' });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T.timeout);
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
  const byId = (id) => page.getByTestId(id);

  await page.goto(stack.url + '/');
  await page.locator('body[data-models="ready"]').waitFor();
  await page.locator('#signin h2').filter({ hasText: '登录' }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');

  // Keys are checked: a malformed one in the page, an unknown one by the server.
  await byId('api-key').fill('not-a-key');
  await byId('signin-submit').click();
  await byId('error-message').filter({ hasText: 'API 密钥以 nbk_ 开头' }).waitFor();
  await byId('api-key').fill('nbk_doesnotexist');
  await byId('signin-submit').click();
  await byId('error-message').filter({ hasText: 'API 密钥无效' }).waitFor();
  assert.ok((await byId('error-request-id').textContent()).trim().length > 4);
  await byId('api-key').fill(user.key);
  await byId('signin-submit').click();
  await byId('credits').filter({ hasText: '10 积分' }).waitFor();
  await byId('error').waitFor({ state: 'hidden' });

  await byId('model').selectOption('nano-banana-edit');
  // Not an image by its bytes, and too large: refused before any upload.
  const dir = tmpdir();
  const fake = path.join(dir, `fake-${process.pid}.png`);
  writeFileSync(fake, '<html>not a png</html>');
  const big = path.join(dir, `big-${process.pid}.png`);
  writeFileSync(big, Buffer.concat([pngBytes(8, 8), Buffer.alloc(10 * 1024 * 1024)]));
  // The drop zone is a button: Enter opens the file picker.
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), byId('dropzone').press('Enter')]);
  assert.ok(chooser.isMultiple());
  await chooser.setFiles([fake, big]);
  await byId('image-error').filter({ hasText: '不是 JPEG、PNG 或 WebP 图片' }).filter({ hasText: '上限为 10 MB' }).waitFor();
  assert.equal(await byId('preview').count(), 0);

  // Drag and drop, and paste.
  const b64 = pngBytes(20, 20).toString('base64');
  const dt = await page.evaluateHandle((b) => {
    const d = new DataTransfer();
    d.items.add(new File([Uint8Array.from(atob(b), (c) => c.charCodeAt(0))], 'dropped.png', { type: 'image/png' }));
    return d;
  }, b64);
  await byId('dropzone').dispatchEvent('drop', { dataTransfer: dt });
  await byId('preview').first().waitFor();
  await page.evaluate((b) => {
    const d = new DataTransfer();
    d.items.add(new File([Uint8Array.from(atob(b), (c) => c.charCodeAt(0))], 'pasted.png', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: d, bubbles: true }));
  }, b64);
  await byId('preview').nth(1).waitFor();
  await page.getByRole('button', { name: '移除图片 1' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="preview"]').length === 1);
  assert.equal(await page.locator('[data-testid="preview"] img').getAttribute('alt'), 'pasted.png');

  // The network drops, the answer of a request that created the task is lost,
  // then a 429: every attempt carries the same key, and one task is charged once.
  const keys = [];
  let n = 0;
  await page.route('**/api/create/ai-image', async (route) => {
    keys.push(route.request().headers()['idempotency-key']);
    n += 1;
    if (n === 1) return route.abort('internetdisconnected');
    if (n === 2) {
      await route.fetch();
      return route.abort('connectionreset');
    }
    if (n === 3) {
      return route.fulfill({
        status: 429,
        headers: { 'Retry-After': '1', 'Content-Type': 'application/json' },
        body: JSON.stringify({ error: { code: 'rate_limited', message: 'Slow down.', request_id: 'rid-429', retryable: true } }),
      });
    }
    return route.continue();
  });
  await byId('prompt').fill('一根香蕉');
  await byId('generate').dblclick();
  await byId('notice').filter({ hasText: '重试' }).waitFor();
  await page.locator('#watch[data-state="succeeded"]').waitFor({ timeout: 30000 });
  await byId('notice').waitFor({ state: 'hidden' });
  assert.equal(n, 4, 'one click, three failed attempts, one replay');
  assert.ok(keys[0] && keys.every((k) => k === keys[0]), `one Idempotency-Key: ${keys}`);
  const rows = await stack.sql('SELECT id FROM tasks WHERE user_id = ?', user.id);
  assert.equal(rows.length, 1, 'one task');
  await byId('credits').filter({ hasText: '8 积分' }).waitFor();
  const [u] = await stack.sql('SELECT credits FROM users WHERE id = ?', user.id);
  assert.equal(u.credits, 8, 'charged once');

  // A new click is a new intent: a new key.
  await page.unroute('**/api/create/ai-image');
  const next = page.waitForRequest('**/api/create/ai-image');
  await byId('generate').click();
  const key2 = (await next).headers()['idempotency-key'];
  assert.notEqual(key2, keys[0]);
  await page.locator(`#watch[data-state="succeeded"]:not([data-task-id="${rows[0].id}"])`).waitFor();
  await byId('credits').filter({ hasText: '6 积分' }).waitFor();

  assert.deepEqual(problems, []);
  await ctx.close();
});

test('the create form is rendered only from the server\'s model table: waiting, failure and retry, prices, limits, "Model default"', { timeout: 120000 }, async () => {
  // A deployment whose price and upload limit differ from the defaults.
  const MB = 1024 * 1024;
  const own = await startStack({ name: 'browser-models', vars: { PRICE_NANO_BANANA: '7', MAX_UPLOAD_BYTES: String(2 * MB) } });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
  try {
    const user = await own.createUser(20, 'Model Viewer');
    const page = await ctx.newPage();
    page.setDefaultTimeout(T.timeout);
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(String(e)));
    const byId = (id) => page.getByTestId(id);
    const creates = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/create/ai-image') creates.push(r); });

    // The table cannot be fetched (a 5xx, then a dropped connection, ...): the
    // form is not shown, the page says why in both languages and retries.
    let failing = true, modelCalls = 0;
    await page.route('**/api/models', (route) => {
      modelCalls += 1;
      if (!failing) return route.continue();
      if (modelCalls % 2) return route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":{"code":"internal_error","message":"down"}}' });
      return route.abort('connectionreset');
    });
    await page.goto(own.url + '/');
    await byId('api-key').fill(user.key);
    await byId('signin-submit').click();
    await byId('credits').filter({ hasText: /^20 credits$/ }).waitFor();
    await byId('models-status').filter({ hasText: 'Could not load the models and prices from the server; retrying in' }).waitFor();
    await waitFor(() => modelCalls >= 2, { what: 'a second try of /api/models' });
    await page.locator('body[data-models="error"]').waitFor();
    for (const id of ['model', 'prompt', 'aspect-ratio', 'generate']) assert.equal(await byId(id).isVisible(), false, `${id} is not shown without the table`);
    await byId('lang-toggle').click();
    await byId('models-status').filter({ hasText: '无法从服务器加载模型和价格' }).waitFor();
    await byId('models-retry').filter({ hasText: '立即重试' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'models-unavailable-zh.png') });
    await byId('lang-toggle').click();
    await byId('models-status').filter({ hasText: 'Could not load the models and prices' }).waitFor();
    assert.equal(creates.length, 0, 'nothing can be submitted');

    // The server answers again: "Try again now" loads the table and shows the form.
    failing = false;
    await byId('models-retry').click();
    await page.locator('body[data-models="ready"]').waitFor();
    await byId('models-status').waitFor({ state: 'hidden' });
    await byId('prompt').waitFor();

    // The server's price, and its default ratio preselected.
    await byId('generate').filter({ hasText: 'Generate · 7 credits' }).waitFor();
    assert.equal(await byId('model').inputValue(), 'nano-banana');
    assert.equal((await page.locator('#model option[value="nano-banana"]').textContent()).trim(), 'nano-banana — 7 credits');
    assert.equal(await byId('aspect-ratio').inputValue(), '1:1');
    assert.equal(await page.locator('#ratio option[value=""]').count(), 0, 'no "Model default" where the model has a default');

    // The server's upload limit (2 MB here, 10 MB by default) is enforced in the page.
    await byId('model').selectOption('nano-banana-edit');
    await byId('generate').filter({ hasText: 'Generate · 2 credits' }).waitFor();
    await page.locator('#img-hint').filter({ hasText: 'JPEG, PNG or WebP, up to 2 MB each' }).waitFor();
    const big = path.join(tmpdir(), `limit-${process.pid}.png`);
    writeFileSync(big, Buffer.concat([pngBytes(8, 8), Buffer.alloc(3 * MB)]));
    await byId('file-input').setInputFiles(big);
    await byId('image-error').filter({ hasText: 'is 3 MB; the limit is 2 MB' }).waitFor();
    assert.equal(await byId('preview').count(), 0);

    // Flux Kontext has no default ratio: "Model default" is offered first and
    // chosen, and the create request carries no ratio.
    await byId('model').selectOption('flux-kontext-pro');
    assert.equal(await byId('aspect-ratio').inputValue(), '');
    assert.equal(await page.locator('#ratio option').first().getAttribute('value'), '');
    assert.equal((await page.locator('#ratio option:checked').textContent()).trim(), 'Model default');
    await byId('lang-toggle').click();
    assert.equal((await page.locator('#ratio option:checked').textContent()).trim(), '模型默认');
    await page.screenshot({ path: path.join(SHOTS, 'flux-model-default-zh.png') });
    await byId('lang-toggle').click();
    await byId('prompt').fill('A banana in its own proportions');
    await byId('generate').click();
    await page.locator('#watch[data-state="succeeded"]').waitFor();
    assert.equal(creates.length, 1);
    assert.doesNotMatch(creates[0].postData() || '', /name="aspect_ratio"\r\n\r\n[^\r]/, 'no aspect ratio is sent');
    const task = await own.task(user.key, await page.locator('#watch').getAttribute('data-task-id'));
    assert.equal(task.model, 'flux-kontext-pro');
    assert.equal(task.aspect_ratio, null);

    // The draft remembers the ratio, "Model default" included.
    await page.reload();
    await page.locator('body[data-models="ready"]').waitFor();
    assert.equal(await byId('model').inputValue(), 'flux-kontext-pro');
    assert.equal(await byId('aspect-ratio').inputValue(), '');
    await byId('aspect-ratio').selectOption('4:3');
    await page.reload();
    await page.locator('body[data-models="ready"]').waitFor();
    assert.equal(await byId('aspect-ratio').inputValue(), '4:3');
    await byId('aspect-ratio').selectOption('');
    await page.reload();
    await page.locator('body[data-models="ready"]').waitFor();
    assert.equal(await byId('model').inputValue(), 'flux-kontext-pro');
    assert.equal(await byId('aspect-ratio').inputValue(), '');

    assert.deepEqual(problems, [], 'no console errors');
  } finally {
    await ctx.close().catch(() => {});
    await own.close();
  }
});
