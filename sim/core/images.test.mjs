import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageSize, makeJpeg, makePng, ratioOf } from './images.mjs';

test('imageSize reads PNG IHDR, JPEG SOF and WebP VP8/VP8L/VP8X headers', () => {
  assert.deepEqual(imageSize(makePng(30, 40, () => [0, 0, 0])), { width: 30, height: 40 });
  assert.deepEqual(imageSize(makeJpeg(24, 32, () => [0, 0, 0])), { width: 24, height: 32 });
  // The first 30 bytes of files written by libwebp: lossy 30×40, lossless 30×40, extended (alpha) 300×41.
  const webp = (hex) => Buffer.from(hex, 'hex');
  assert.deepEqual(imageSize(webp('524946464c0000005745425056503820400000005003009d012a1e002800')), { width: 30, height: 40 });
  assert.deepEqual(imageSize(webp('524946461e000000574542505650384c110000002f1dc009000750852257')), { width: 30, height: 40 });
  assert.deepEqual(imageSize(webp('524946469000000057454250565038580a000000100000002b0100280000')), { width: 300, height: 41 });
});

test('imageSize: null for anything it cannot read', () => {
  assert.equal(imageSize(Buffer.from('<html>not an image</html>')), null);
  assert.equal(imageSize(Buffer.from([0xff, 0xd8, 0xff, 0xd9])), null); // JPEG with no frame header
  assert.equal(imageSize(makePng(8, 8, () => [0, 0, 0]).subarray(0, 20)), null); // truncated IHDR
  assert.equal(imageSize(null), null);
});

test('ratioOf reduces a size to W:H', () => {
  assert.equal(ratioOf(30, 40), '3:4');
  assert.equal(ratioOf(1920, 1080), '16:9');
  assert.equal(ratioOf(37, 91), '37:91');
});
