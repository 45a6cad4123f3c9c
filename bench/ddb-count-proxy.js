#!/usr/bin/env node
// Counting HTTP/1.1 proxy for DynamoDB (dynalite), loopback only.
//
// Forwards every request to the upstream unchanged and counts it by operation (the
// X-Amz-Target header, e.g. "DynamoDB_20120810.UpdateItem" -> "UpdateItem"). The counts are
// served (not forwarded) at GET /__bench/counts as JSON:
//   {"total": N, "byOp": {"UpdateItem": n, ...}, "uptimeMs": t}
//
// Usage: node ddb-count-proxy.js LISTEN_PORT UPSTREAM_PORT
// Prints "ready <port>" on stdout once listening.
'use strict';
const http = require('http');

const HOST = '127.0.0.1';
const listenPort = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
if (!listenPort || !upstreamPort) {
  console.error('usage: node ddb-count-proxy.js LISTEN_PORT UPSTREAM_PORT');
  process.exit(2);
}

const started = Date.now();
const counts = { total: 0, byOp: {} };
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__bench/counts') {
    const body = JSON.stringify({ ...counts, uptimeMs: Date.now() - started });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  const target = String(req.headers['x-amz-target'] || 'unknown');
  const op = target.includes('.') ? target.slice(target.lastIndexOf('.') + 1) : target;
  counts.total += 1;
  counts.byOp[op] = (counts.byOp[op] || 0) + 1;
  const headers = { ...req.headers };
  delete headers.connection;
  const up = http.request({
    host: HOST, port: upstreamPort, agent, method: req.method, path: req.url, headers,
  }, (ur) => {
    const rh = { ...ur.headers };
    delete rh.connection;
    res.writeHead(ur.statusCode, rh);
    ur.pipe(res);
  });
  up.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502);
    res.end(String(e));
  });
  req.pipe(up);
});
server.keepAliveTimeout = 60000;
server.listen(listenPort, HOST, () => process.stdout.write(`ready ${listenPort}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
