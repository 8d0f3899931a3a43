// mlw export: a model folder for another tool — hf (transformers, PEFT),
// gguf (llama.cpp, Ollama, LM Studio), onnx (transformers.js); and
// mlw import-gguf, the way back from a llama.cpp file to a model folder.
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import { EXPORT_FORMATS, ExportOptions, GGUF_TYPES, HF_DTYPES, ONNX_QUANTIZED_DTYPES, type ExportFormat } from '../../export/options';
import { UsageError } from '../errors';
import { printJson } from '../format';
import { cliJob } from '../progress';

interface ExportCliOpts {
  format: ExportFormat;
  out: string;
  dtype?: (typeof HF_DTYPES)[number];
  unroll?: boolean;
  type?: (typeof GGUF_TYPES)[number];
  quantized?: string;
  json?: boolean;
}

/** The format's options from the flags; a flag of another format is a usage error. */
function optionsOf(o: ExportCliOpts): ExportOptions {
  const foreign: [keyof ExportCliOpts, ExportFormat][] = [
    ['dtype', 'hf'],
    ['unroll', 'hf'],
    ['type', 'gguf'],
    ['quantized', 'onnx'],
  ];
  for (const [flag, format] of foreign) {
    if (o[flag] !== undefined && o.format !== format) throw new UsageError(`--${flag} applies to --format ${format} only`);
  }
  const quantized = o.quantized === undefined ? undefined : o.quantized === 'none' ? [] : o.quantized.split(',');
  if (quantized?.some((q) => !(ONNX_QUANTIZED_DTYPES as readonly string[]).includes(q))) {
    throw new UsageError(`--quantized: "${o.quantized}" is not a list of ${ONNX_QUANTIZED_DTYPES.join(', ')} (or none)`);
  }
  return ExportOptions.parse({ format: o.format, dtype: o.dtype, unroll: o.unroll, type: o.type, quantized });
}

export function registerExportCommands(program: Command): void {
  program
    .command('export')
    .description('write a model for another tool: hf (transformers/PEFT), gguf (llama.cpp, Ollama, LM Studio) or onnx (transformers.js)')
    .argument('<modelDir>', 'model folder, quantized model folder or LoRA adapter folder')
    .addOption(new Option('--format <format>', 'what to write').choices(EXPORT_FORMATS).makeOptionMandatory())
    .requiredOption('--out <dir>', 'a new or empty folder (or an earlier export, which is replaced)')
    .addOption(new Option('--dtype <dtype>', 'hf: weights as (default: as stored; quantized models export dequantized)').choices(HF_DTYPES))
    .option('--unroll', 'hf: a layer-shared model as the plain LLaMA of its effective depth (default: compact, loaded with trust_remote_code)')
    .addOption(new Option('--type <type>', 'gguf: tensor type (default f16)').choices(GGUF_TYPES))
    .option('--quantized <list>', `onnx: quantized files beside model.onnx: ${ONNX_QUANTIZED_DTYPES.join(',')} or none (default: both for a float model)`)
    .option('--json', 'print what was written as JSON')
    .action(async (dir: string, o: ExportCliOpts) => {
      const options = optionsOf(o);
      const { exportModel } = await import('../../export/export');
      const job = cliJob('export', { quiet: o.json });
      let outcome;
      try {
        outcome = await exportModel(dir, o.out, options, job.ctx);
      } finally {
        job.finish();
      }
      if (o.json) return printJson(outcome);
      console.log(`${outcome.outDir}  (${outcome.files.length} files, ${(outcome.bytes / 1e6).toFixed(1)} MB)`);
      for (const note of outcome.notes) console.log(`  ${note}`);
    });

  program
    .command('import-gguf')
    .description('convert a llama-architecture GGUF file (f32, f16, q8_0, q4_0) into a float model folder (tokenizer included)')
    .argument('<file>', 'a .gguf file')
    .requiredOption('--out <dir>', 'new folder for the model')
    .option('--json', 'print what was written as JSON')
    .action(async (file: string, o: { out: string; json?: boolean }) => {
      const { importGguf } = await import('../../export/gguf-import');
      if (fs.existsSync(o.out) && fs.readdirSync(o.out).length) throw new Error(`${o.out}: not empty; choose a new or empty folder for the model`);
      const job = cliJob('import-gguf', { quiet: o.json });
      let result;
      try {
        result = await importGguf(file, o.out, (fraction, message) => job.ctx.progress({ phase: message, done: Math.round(fraction * 1000), total: 1000 }));
      } finally {
        job.finish();
      }
      if (o.json) return printJson(result);
      console.log(result.outDir);
      for (const note of result.notes) console.log(`  ${note}`);
    });
}
