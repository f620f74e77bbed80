#!/usr/bin/env node
// The ONNX Runtime peer: measures inference throughput of one ONNX model (CPU execution provider).
//
// usage: node bench/ort_bench.js MODEL.onnx --batch N --threads T --seconds S
// The model's input must be 'x' with a dynamic batch axis first (bench/export.py writes such).
// Prints 'throughput: X samples/s' (and a latency line), like a pnet executable's bench command.
'use strict';
const path = require('path');

function loadOrt() {
  // bench/run.sh installs onnxruntime-node into bench/.node/; fall back to the usual resolution.
  try {
    return require(path.join(__dirname, '.node', 'node_modules', 'onnxruntime-node'));
  } catch (e) {
    return require('onnxruntime-node');
  }
}

function parseArgs(argv) {
  const a = { model: null, batch: 1, threads: 1, seconds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--batch') a.batch = parseInt(argv[++i], 10);
    else if (k === '--threads') a.threads = parseInt(argv[++i], 10);
    else if (k === '--seconds') a.seconds = parseFloat(argv[++i]);
    else if (!k.startsWith('--') && a.model === null) a.model = k;
    else throw new Error(`ort_bench: unknown argument ${k}`);
  }
  if (!a.model) throw new Error('usage: node bench/ort_bench.js MODEL.onnx --batch N --threads T --seconds S');
  return a;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  let dims = meta && meta.shape ? meta.shape.slice() : null;
  if (!dims) throw new Error('ort_bench: cannot read the input shape');
  dims[0] = a.batch;
  const size = dims.reduce((p, d) => p * d, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.random() * 2 - 1;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, dims) };  // preallocated

  const now = () => Number(process.hrtime.bigint()) / 1e9;
  // warm-up: at least 3 runs and about a tenth of the timed period
  let tEnd = now() + Math.max(0.2, a.seconds / 10);
  for (let n = 0; n < 3 || now() < tEnd; n++) await session.run(feeds);

  const lat = [];
  const t0 = now();
  tEnd = t0 + a.seconds;
  let e;
  for (;;) {
    const s = now();
    await session.run(feeds);
    e = now();
    lat.push(e - s);
    if (e >= tEnd) break;
  }
  const total = e - t0;
  lat.sort((p, q) => p - q);
  const med = lat[Math.floor((lat.length - 1) / 2)];
  const p90 = lat[Math.floor(0.9 * (lat.length - 1))];
  console.log(`network: ${path.basename(a.model)} (onnxruntime ${ort.env.versions ? ort.env.versions.common : ''}), ` +
              `batch ${a.batch}, threads ${a.threads}, ${lat.length} runs`);
  console.log(`throughput: ${(lat.length * a.batch / total).toFixed(1)} samples/s`);
  console.log(`latency: median ${(med * 1e3).toFixed(3)} ms, p90 ${(p90 * 1e3).toFixed(3)} ms, ` +
              `min ${(lat[0] * 1e3).toFixed(3)} ms per batch`);
  if (session.release) await session.release();
}

main().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
