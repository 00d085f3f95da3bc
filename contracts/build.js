#!/usr/bin/env node
// Compiles contracts/AuditAnchor.sol with the pinned solc-js (package-lock.json) and writes
// contracts/AuditAnchor.json. Offline and deterministic: the same source and compiler give
// the same bytes (fixed settings, fixed key order, two-space indent, trailing newline).
//
//   node contracts/build.js           rebuild the artifact
//   node contracts/build.js --check   exit 1 if the committed artifact differs from a fresh
//                                     compile (nothing is written)
// Exit codes: 0 ok, 1 artifact differs (--check), 2 compile or usage error.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const CONTRACT = 'AuditAnchor';
const SOURCE_NAME = CONTRACT + '.sol'; // the name inside the metadata: never a local path
const here = __dirname;
const sourcePath = path.join(here, SOURCE_NAME);
const artifactPath = path.join(here, CONTRACT + '.json');

// Everything that changes the bytecode. "paris" (no PUSH0) runs on every EIP-1559 chain
// the node may anchor on, anvil's default hardfork included.
const SETTINGS = {
  evmVersion: 'paris',
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: 'ipfs' },
};

function fail(code, msg) {
  process.stderr.write('contracts/build.js: ' + msg + '\n');
  process.exit(code);
}

// Sorted keys at every level, so the output does not depend on solc's insertion order.
function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = canonical(v[k]);
    return o;
  }
  return v;
}

function eventSignature(item) {
  return item.name + '(' + item.inputs.map((i) => i.type).join(',') + ')';
}

function build() {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  if (args.some((a) => a !== '--check')) fail(2, 'usage: node contracts/build.js [--check]');

  let solc, keccak256;
  try {
    solc = require('solc');
    keccak256 = require('js-sha3').keccak256; // solc's own dependency, pinned by the lock
  } catch (e) {
    fail(2, 'solc is not installed (run scripts/setup-node.sh): ' + e.message);
  }

  const source = fs.readFileSync(sourcePath);
  const pragma = /^pragma solidity (\d+\.\d+\.\d+);$/m.exec(source.toString('utf8'));
  const version = solc.version();
  if (!pragma || !version.startsWith(pragma[1] + '+'))
    fail(2, 'solc ' + version + ' does not match the pragma ' + (pragma ? pragma[1] : '(none)'));

  const input = {
    language: 'Solidity',
    sources: { [SOURCE_NAME]: { content: source.toString('utf8') } },
    settings: Object.assign({}, SETTINGS, {
      outputSelection: {
        [SOURCE_NAME]: {
          [CONTRACT]: [
            'abi',
            'evm.bytecode.object',
            'evm.deployedBytecode.object',
            'evm.methodIdentifiers',
          ],
        },
      },
    }),
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  // A clean contract has no diagnostics at all: warnings fail the build too.
  const diags = output.errors || [];
  if (diags.length) fail(2, 'solc:\n' + diags.map((d) => d.formattedMessage || d.message).join('\n'));
  const c = output.contracts && output.contracts[SOURCE_NAME] && output.contracts[SOURCE_NAME][CONTRACT];
  if (!c || !c.evm.bytecode.object) fail(2, 'solc produced no bytecode for ' + CONTRACT);

  const methods = {};
  for (const sig of Object.keys(c.evm.methodIdentifiers).sort())
    methods[sig] = '0x' + c.evm.methodIdentifiers[sig];
  const events = {};
  for (const item of c.abi.filter((i) => i.type === 'event').map(eventSignature).sort())
    events[item] = '0x' + keccak256(item);

  const artifact = {
    contractName: CONTRACT,
    sourceName: SOURCE_NAME,
    sourceSha256: crypto.createHash('sha256').update(source).digest('hex'),
    compiler: { name: 'solc-js', version: version, settings: canonical(SETTINGS) },
    abi: canonical(c.abi),
    methodIdentifiers: methods,
    eventTopics: events,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
  };
  const text = JSON.stringify(artifact, null, 2) + '\n';

  if (check) {
    let committed = null;
    try {
      committed = fs.readFileSync(artifactPath, 'utf8');
    } catch (e) {
      fail(1, 'no committed artifact: ' + e.message);
    }
    if (committed === text) {
      process.stdout.write('contracts/build.js: ' + path.basename(artifactPath) + ' matches a fresh compile (' + version + ')\n');
      return;
    }
    let which = 'the file text';
    try {
      const old = JSON.parse(committed);
      const diff = Object.keys(artifact).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(artifact[k]));
      if (diff.length) which = diff.join(', ');
    } catch (e) {
      which = 'the file is not JSON';
    }
    fail(1, path.basename(artifactPath) + ' differs from a fresh compile (' + which +
      '): run node contracts/build.js and commit the result');
  }
  fs.writeFileSync(artifactPath + '.tmp', text);
  fs.renameSync(artifactPath + '.tmp', artifactPath);
  process.stdout.write('contracts/build.js: wrote ' + path.relative(process.cwd(), artifactPath) + ' (' + version + ')\n');
}

build();
