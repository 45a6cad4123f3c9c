#!/usr/bin/env node
/*
 * aws-kcl (Node.js) record processor, VERSION2 style (initialize / processRecords / leaseLost /
 * shardEnded / shutdownRequested), that writes a ledger of every record it receives.
 *
 *   executableName = node <repo>/sample-apps/node/ledger_processor.js --ledger /tmp/ledger.jsonl
 *   (or <repo>/sample-apps/node/run.sh --ledger ..., which sets NODE_PATH)
 *
 * aws-kcl 2.3.2 is loaded with require('aws-kcl') (NODE_PATH), falling back to the test bed:
 * $MULTILANGD_TESTBED/emu/node_modules/aws-kcl, else <repo>/.testbed/emu/node_modules/aws-kcl.
 *
 * Ledger: one JSON line per record, same keys as the Python processors:
 *   {"shardId","sequenceNumber","subSequenceNumber","partitionKey","sha256","processor":"node","pid"}
 * written (one appending write per batch) before any checkpoint covering it. Events (optional):
 * initialize, process_records, checkpoint (+ error), lease_lost, shard_ended, shutdown_requested.
 *
 * Options (or env): --ledger FILE ($LEDGER_FILE; "{shard}" is replaced by the shard id),
 * --events FILE ($LEDGER_EVENTS_FILE), --checkpoint-every N ($CHECKPOINT_EVERY, 0 = once per batch
 * with no sequence number), --checkpoint-retries N ($CHECKPOINT_RETRIES, 10),
 * --retry-backoff-ms MS ($CHECKPOINT_BACKOFF_MS, 100), --process-delay-ms MS ($PROCESS_DELAY_MS, 0).
 * ThrottlingException is retried with exponential backoff (max 5 s); ShutdownException stops
 * checkpointing. Only stderr is used for diagnostics: stdout carries the protocol.
 */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

function loadKcl() {
  try {
    return require('aws-kcl');
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
  }
  const testbed = process.env.MULTILANGD_TESTBED || path.join(__dirname, '..', '..', '.testbed');
  return require(path.join(testbed, 'emu', 'node_modules', 'aws-kcl'));
}

function log(message) {
  process.stderr.write(`ledger-processor[${process.pid}]: ${message}\n`);
}

function parseConfig(argv) {
  const env = process.env;
  const config = {
    ledger: env.LEDGER_FILE || null,
    events: env.LEDGER_EVENTS_FILE || null,
    checkpointEvery: parseInt(env.CHECKPOINT_EVERY || '0', 10),
    checkpointRetries: parseInt(env.CHECKPOINT_RETRIES || '10', 10),
    retryBackoffMs: parseInt(env.CHECKPOINT_BACKOFF_MS || '100', 10),
    processDelayMs: parseInt(env.PROCESS_DELAY_MS || '0', 10),
  };
  const keys = {
    '--ledger': 'ledger', '--events': 'events', '--checkpoint-every': 'checkpointEvery',
    '--checkpoint-retries': 'checkpointRetries', '--retry-backoff-ms': 'retryBackoffMs',
    '--process-delay-ms': 'processDelayMs',
  };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (!(flag in keys)) {
      log(`unknown argument ${argv[i]}`);
      process.exit(2);
    }
    if (value === undefined) value = argv[++i];
    if (value === undefined) {
      log(`${flag} needs a value`);
      process.exit(2);
    }
    const key = keys[flag];
    config[key] = (key === 'ledger' || key === 'events') ? value : parseInt(value, 10);
  }
  if (!config.ledger) {
    log('no ledger file: pass --ledger FILE or set LEDGER_FILE');
    process.exit(2);
  }
  for (const key of ['checkpointEvery', 'checkpointRetries', 'retryBackoffMs', 'processDelayMs']) {
    if (!Number.isInteger(config[key]) || config[key] < 0) {
      log(`invalid ${key}: ${config[key]}`);
      process.exit(2);
    }
  }
  return config;
}

// Appends whole strings to a file opened with O_APPEND (one write per call, looped on short writes).
function appendAll(fd, text) {
  const buffer = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buffer.length) {
    offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
  }
}

function openAppend(file) {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  return fs.openSync(file, 'a');
}

class LedgerProcessor {
  constructor(config) {
    this.config = config;
    this.shardId = null;
    this.ledgerFd = null;
    this.eventsFd = config.events ? openAppend(config.events) : null;
    this.sinceCheckpoint = 0;
  }

  event(name, fields) {
    if (this.eventsFd === null) return;
    const entry = Object.assign({
      event: name, shardId: this.shardId, processor: 'node', pid: process.pid,
      time: Math.round(Date.now()) / 1000,
    }, fields || {});
    appendAll(this.eventsFd, JSON.stringify(entry) + '\n');
  }

  // Checkpoints (sequenceNumber may be null), retrying ThrottlingException; done(ok).
  checkpoint(checkpointer, during, sequenceNumber, done) {
    let attempt = 0;
    let backoff = this.config.retryBackoffMs;
    const tryOnce = () => {
      attempt += 1;
      checkpointer.checkpoint(sequenceNumber, (err) => {
        this.event('checkpoint', { during, sequenceNumber, attempt, error: err || null });
        if (!err) {
          done(true);
          return;
        }
        if (err === 'ThrottlingException' && attempt <= this.config.checkpointRetries) {
          log(`checkpoint throttled (${during}, attempt ${attempt}); retrying in ${backoff} ms`);
          const wait = backoff;
          backoff = Math.min(backoff * 2, 5000);
          setTimeout(tryOnce, wait);
          return;
        }
        if (err === 'ShutdownException') {
          log('checkpoint refused, lease lost (ShutdownException); not retrying');
        } else {
          log(`checkpoint failed during ${during}: ${err} (attempt ${attempt})`);
        }
        done(false);
      });
    };
    tryOnce();
  }

  initialize(input, completeCallback) {
    this.shardId = input.shardId;
    this.ledgerFd = openAppend(this.config.ledger.split('{shard}').join(input.shardId));
    this.event('initialize', {
      sequenceNumber: input.sequenceNumber === undefined ? null : input.sequenceNumber,
      subSequenceNumber: input.subSequenceNumber === undefined ? null : input.subSequenceNumber,
    });
    completeCallback();
  }

  processRecords(input, completeCallback) {
    const records = input.records || [];
    this.event('process_records', { records: records.length, millisBehindLatest: input.millisBehindLatest });
    if (records.length > 0) {
      const lines = records.map((r) => JSON.stringify({
        shardId: this.shardId,
        sequenceNumber: r.sequenceNumber,
        subSequenceNumber: r.subSequenceNumber === undefined ? null : r.subSequenceNumber,
        partitionKey: r.partitionKey,
        sha256: crypto.createHash('sha256').update(Buffer.from(r.data || '', 'base64')).digest('hex'),
        processor: 'node',
        pid: process.pid,
      }));
      if (this.ledgerFd === null) this.ledgerFd = openAppend(this.config.ledger.split('{shard}').join('unknown-shard'));
      appendAll(this.ledgerFd, lines.join('\n') + '\n');
    }
    const afterDelay = () => {
      if (records.length === 0) {
        completeCallback();
        return;
      }
      if (this.config.checkpointEvery === 0) {
        this.checkpoint(input.checkpointer, 'processRecords', null, () => completeCallback());
        return;
      }
      // Checkpoint at every Nth record, one checkpoint in flight at a time.
      const due = [];
      let since = this.sinceCheckpoint;
      for (const r of records) {
        since += 1;
        if (since >= this.config.checkpointEvery) {
          due.push(r.sequenceNumber);
          since = 0;
        }
      }
      this.sinceCheckpoint = since;
      const next = (i) => {
        if (i >= due.length) {
          completeCallback();
          return;
        }
        this.checkpoint(input.checkpointer, 'processRecords', due[i], (ok) => (ok ? next(i + 1) : completeCallback()));
      };
      next(0);
    };
    if (this.config.processDelayMs > 0) setTimeout(afterDelay, this.config.processDelayMs);
    else afterDelay();
  }

  leaseLost(input, completeCallback) {
    this.event('lease_lost');
    completeCallback();
  }

  shardEnded(input, completeCallback) {
    this.event('shard_ended');
    this.checkpoint(input.checkpointer, 'shardEnded', null, () => completeCallback());
  }

  shutdownRequested(input, completeCallback) {
    this.event('shutdown_requested');
    this.checkpoint(input.checkpointer, 'shutdownRequested', null, () => completeCallback());
  }
}

if (require.main === module) {
  const kcl = loadKcl();
  kcl(new LedgerProcessor(parseConfig(process.argv.slice(2)))).run();
}

module.exports = { LedgerProcessor, parseConfig };
