// Builds the runtime's Response from what the wasm hands over in one call
// (src/http/response.rs): the status, the headers as one string of
// `name\nvalue\n` pairs, and the body (null, a string or a stream). One
// crossing per response instead of one per header.

export function respond(status, head, body) {
  const headers = new Headers();
  for (let i = 0; i < head.length; ) {
    const nameEnd = head.indexOf('\n', i);
    const valueEnd = head.indexOf('\n', nameEnd + 1);
    headers.append(head.slice(i, nameEnd), head.slice(nameEnd + 1, valueEnd));
    i = valueEnd + 1;
  }
  return new Response(body, { status, headers });
}

// `bytes` is a view of the wasm's memory: copied before anything else runs.
export function respond_bytes(status, head, bytes) {
  return respond(status, head, bytes.slice());
}
