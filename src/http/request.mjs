// What every request needs of the runtime's request, handed to the wasm in
// one call (src/http/request.rs): `method\nurl\ncf-ray`. Other headers are
// read one by one, when a handler asks (iterating all headers costs more
// than the few reads a request makes).

export function request_head(request) {
  return request.method + '\n' + request.url + '\n' + (request.headers.get('cf-ray') || '');
}
