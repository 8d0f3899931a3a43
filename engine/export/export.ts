// One entry for every export (`mlw export`, the model page's Export): checks
// where it may write, runs the format's exporter with progress and cancel,
// and leaves `mlw-export.json` beside what it wrote (source, format, options,
// time), which also marks the folder as ours to replace on the next export.
import fs from 'node:fs';
import path from 'node:path';
import { CancelledError, type JobContext } from '../jobs/job';
import { exportGguf } from './gguf';
import { exportHf } from './hf';
import { exportOnnx } from './onnx';
import type { ExportOptions, ExportOutcome } from './options';
import type { ExportResult } from './result';
import { checkExportTarget, EXPORT_RECORD } from './target';

function run(modelDir: string, outDir: string, o: ExportOptions, onProgress: (fraction: number, message: string) => void): Promise<ExportResult> {
  switch (o.format) {
    case 'hf':
      return exportHf(modelDir, outDir, { dtype: o.dtype, unroll: o.unroll }, onProgress);
    case 'gguf':
      return exportGguf(modelDir, outDir, { type: o.type }, onProgress);
    case 'onnx':
      return exportOnnx(modelDir, outDir, { quantized: o.quantized }, onProgress);
  }
}

function folderBytes(dir: string, files: string[]): number {
  return files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

export async function exportModel(modelDir: string, outDir: string, options: ExportOptions, ctx: JobContext): Promise<ExportOutcome> {
  const out = path.resolve(outDir);
  checkExportTarget(out);
  const result = await run(path.resolve(modelDir), out, options, (fraction, message) => {
    if (ctx.signal.aborted) throw new CancelledError();
    ctx.progress({ phase: message, done: Math.round(fraction * 1000), total: 1000 });
  });
  const record = { source: path.resolve(modelDir), options, files: result.files, notes: result.notes, exportedAt: new Date().toISOString() };
  fs.writeFileSync(path.join(out, EXPORT_RECORD), JSON.stringify(record, null, 2) + '\n');
  return { outDir: out, files: result.files, bytes: folderBytes(out, result.files), notes: result.notes };
}
