#!/usr/bin/env node
// h2c (HTTP/2 cleartext, prior knowledge) + HTTP/1.1 -> HTTP/1.1 loopback proxy.
//
// The Java KCL's Kinesis client always speaks h2c to http:// endpoints; kinesalite only speaks
// HTTP/1.1. This proxy sniffs the first bytes of each connection: the HTTP/2 connection preface
// ("PRI * HTTP/2.0") goes to an internal h2c server that replays each stream as an HTTP/1.1
// request to the upstream; anything else is piped to the upstream byte for byte.
//
// Usage: node h2c-proxy.js LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1 only)
// Prints "ready <port>" on stdout once listening.
'use strict';
const net = require('net');
const http = require('http');
const http2 = require('http2');

const HOST = '127.0.0.1';
const listenPort = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
if (!listenPort || !upstreamPort) {
  console.error('usage: node h2c-proxy.js LISTEN_PORT UPSTREAM_PORT');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
// Hop-by-hop headers (HTTP/1.1) and headers HTTP/2 forbids.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host']);

const h2 = http2.createServer({ maxSessionMemory: 64 });
h2.on('stream', (stream, headers) => {
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(':') || HOP.has(k)) continue;
    out[k] = v;
  }
  out.host = `${HOST}:${upstreamPort}`;
  const req = http.request({
    host: HOST, port: upstreamPort, agent,
    method: headers[':method'], path: headers[':path'] || '/', headers: out,
  }, (res) => {
    const rh = { ':status': res.statusCode };
    for (const [k, v] of Object.entries(res.headers)) {
      if (!HOP.has(k)) rh[k] = v;
    }
    if (stream.destroyed) { res.resume(); return; }
    stream.respond(rh);
    res.pipe(stream);
  });
  req.on('error', (e) => {
    if (!stream.destroyed && !stream.headersSent) {
      stream.respond({ ':status': 502 });
      stream.end(String(e));
    } else if (!stream.destroyed) {
      stream.destroy();
    }
  });
  stream.on('error', () => req.destroy());
  stream.pipe(req);
});
h2.on('sessionError', () => {});

// The internal h2c server listens on an ephemeral loopback port; sniffed h2c connections are
// piped to it (handing the socket over with emit('connection') loses the already-read preface).
h2.listen(0, HOST, () => {
  const h2port = h2.address().port;
  const front = net.createServer((sock) => {
    sock.once('data', (first) => {
      const isH2 = first.length >= 3 && first.slice(0, 3).toString('latin1') === 'PRI';
      const up = net.connect(isH2 ? h2port : upstreamPort, HOST);
      up.setNoDelay(true);
      sock.setNoDelay(true);
      up.write(first);
      sock.pipe(up);
      up.pipe(sock);
      const close = () => { sock.destroy(); up.destroy(); };
      up.on('error', close);
      sock.on('error', close);
      up.on('close', close);
      sock.on('close', close);
    });
    sock.on('error', () => sock.destroy());
  });
  front.listen(listenPort, HOST, () => {
    process.stdout.write(`ready ${listenPort}\n`);
  });
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
