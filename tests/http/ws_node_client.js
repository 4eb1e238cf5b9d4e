// An independent WebSocket client for tests/http/test_ws_interop.py: Node's
// `ws` package (installed by ctest's node_ws fixture into <build>/node, found
// through NODE_PATH) talks to the server's echo route.
//
//   node ws_node_client.js URL on|off SIZE[,SIZE...] [CLOSE_CODE,...]
//
// with permessage-deflate offered (on: every message compressed, threshold 0)
// or not (off). For each size, a text and a binary message of that many
// bytes are sent one after the other, each after the echo of the one before,
// and each echo is compared byte for byte; then a ping with a payload, and a
// close with code 1000. Then, for each CLOSE_CODE, a new connection closes
// with that code. The results go to stdout as one JSON object:
//
//   {"ws": version, "extensions": negotiated, "answer": the server's
//    Sec-WebSocket-Extensions, "messages": [{"size", "binary",
//    "ok", "error", "ms", "compressed"}], "ping": {"ok", "error"},
//    "close": {"code", "reason"}, "closes": [{"sent", "code", "reason"}]}
'use strict';

const WebSocket = require('ws');

const [url, deflateArg, sizesArg, closesArg] = process.argv.slice(2);
const deflate = deflateArg === 'on';
const sizes = (sizesArg || '').split(',').filter(Boolean).map(Number);
const closeCodes = (closesArg || '').split(',').filter(Boolean).map(Number);
const TIMEOUT_MS = Number(process.env.WS_NODE_TIMEOUT_MS || 60000);

// n bytes of valid UTF-8 with 2- and 3-byte characters (text), or of every
// byte value (binary).
function payload(n, binary) {
  if (binary) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
    return b;
  }
  const unit = Buffer.from('héllo wörld € 0123456789 ');
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += unit.length) unit.copy(b, i, 0, Math.min(unit.length, n - i));
  // Do not end inside a character: replace a cut character's bytes by spaces.
  let k = n;
  while (k > 0 && (b[k - 1] & 0xc0) === 0x80) k--;
  if (k > 0 && b[k - 1] >= 0xc0) {
    const lead = b[k - 1];
    const len = lead >= 0xe0 ? 3 : 2;
    if (n - (k - 1) < len) b.fill(0x20, k - 1, n);
  }
  return b;
}

function open(options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.once('upgrade', (res) => { ws.answer = res.headers['sec-websocket-extensions'] || null; });
    const timer = setTimeout(() => reject(new Error('no handshake')), TIMEOUT_MS);
    ws.once('open', () => { clearTimeout(timer); resolve(ws); });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function next(ws, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error('no ' + event)); }, TIMEOUT_MS);
    const onEvent = (...args) => { cleanup(); resolve(args); };
    const onClose = (code, reason) => {
      cleanup();
      reject(new Error('closed ' + code + ' ' + reason.toString()));
    };
    const onError = (e) => { cleanup(); reject(e); };
    function cleanup() {
      clearTimeout(timer);
      ws.off(event, onEvent);
      ws.off('close', onClose);
      ws.off('error', onError);
    }
    ws.once(event, onEvent);
    if (event !== 'close') ws.once('close', onClose);
    ws.once('error', onError);
  });
}

// Whether the server's frames carry RSV1: ws keeps it on the receiver.
function watchCompression(ws) {
  const seen = [];
  const receiver = ws._receiver;
  if (receiver && typeof receiver.getInfo === 'function') {
    const getInfo = receiver.getInfo.bind(receiver);
    receiver.getInfo = function (cb) {
      const r = getInfo(cb);
      // Past GET_INFO (state 0): a frame's first two bytes were read.
      if (this._state !== 0 && (this._opcode === 1 || this._opcode === 2)) {
        seen.push(this._compressed === true);
      }
      return r;
    };
  }
  return seen;
}

async function main() {
  const options = {
    perMessageDeflate: deflate ? { threshold: 0 } : false,
    maxPayload: 64 * 1024 * 1024,
  };
  const out = {
    ws: require('ws/package.json').version,
    deflate,
    extensions: null,
    answer: null,
    messages: [],
    ping: null,
    close: null,
    closes: [],
  };
  const ws = await open(options);
  out.extensions = ws.extensions;
  out.answer = ws.answer;
  const compressed = watchCompression(ws);
  for (const size of sizes) {
    for (const binary of [false, true]) {
      const data = payload(size, binary);
      const rec = { size, binary, ok: false, error: null, ms: 0, compressed: null };
      const t0 = process.hrtime.bigint();
      try {
        const before = compressed.length;
        const got = next(ws, 'message');
        ws.send(data, { binary, compress: deflate });
        const [echoed, isBinary] = await got;
        const buf = Buffer.isBuffer(echoed) ? echoed : Buffer.concat(echoed);
        rec.compressed = compressed.length > before ? compressed[before] : null;
        if (isBinary !== binary) rec.error = 'echo came as ' + (isBinary ? 'binary' : 'text');
        else if (!buf.equals(data)) rec.error = 'echo differs: ' + buf.length + ' bytes';
        else rec.ok = true;
      } catch (e) {
        rec.error = String(e && e.message || e);
      }
      rec.ms = Number(process.hrtime.bigint() - t0) / 1e6;
      out.messages.push(rec);
    }
  }
  try {
    const data = Buffer.from('ping from ws');
    const got = next(ws, 'pong');
    ws.ping(data);
    const [pong] = await got;
    out.ping = { ok: pong.equals(data), error: pong.equals(data) ? null : 'pong ' + pong };
  } catch (e) {
    out.ping = { ok: false, error: String(e && e.message || e) };
  }
  try {
    const got = next(ws, 'close');
    ws.close(1000, 'done');
    const [code, reason] = await got;
    out.close = { code, reason: reason.toString() };
  } catch (e) {
    out.close = { code: null, reason: null, error: String(e && e.message || e) };
  }
  for (const sent of closeCodes) {
    try {
      const c = await open(options);
      const got = next(c, 'close');
      c.close(sent, 'code ' + sent);
      const [code, reason] = await got;
      out.closes.push({ sent, code, reason: reason.toString() });
    } catch (e) {
      out.closes.push({ sent, code: null, reason: null, error: String(e && e.message || e) });
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e && e.stack || e) }) + '\n');
  process.exitCode = 1;
});
