// mlw quantize: a float model folder → a quantized one, with a report of what
// it saved and cost, recorded in the store (linked to the source model). A
// folder without a tokenizer is quantized too: no perplexity, per-layer errors on fixed ids.
import fs from 'node:fs';
import type { Command } from 'commander';
import { Option } from 'commander';
import { describeBackend, initBackend, type BackendName } from '../../backend/select';
import { hasTokenizer, loadTokenizer } from '../../tokenizer/tokenizer';
import { readModelFolder } from '../../folder/kind';
import { openStore } from '../../store/open';
import { quantizeJob } from '../../quant/job';
import { recordQuantization } from '../../quant/record';
import { NO_PERPLEXITY, reportToMarkdown } from '../../quant/report';
import { GROUP_SIZES, QUANT_METHODS } from '../../quant/spec';
import { RUNTIME_NAMES, type RuntimeName } from '../../runtime/runtime';
import { cliJob } from '../progress';
import { bundledResources } from '../../server/resources';
import { UsageError } from '../errors';
import { parseNumber, printJson } from '../format';

interface QuantizeOpts {
  method: string;
  groupSize?: string;
  keepEmbeddingFp?: boolean;
  evalText?: string;
  out: string;
  runtime?: RuntimeName;
  json?: boolean;
}

export function registerQuantizeCommands(program: Command): void {
  program
    .command('quantize')
    .description("quantize a float model (w8a8: the MobileLLM paper's W8A8; w8/w4: weight-only) and report size and quality")
    .argument('<modelDir>', 'float model folder, or a LoRA adapter folder (merged into its base model first)')
    .addOption(new Option('--method <method>', 'quantization method').choices(QUANT_METHODS).makeOptionMandatory())
    .option('--group-size <n>', `w4: inputs per scale, ${GROUP_SIZES.join(', ')} (default: the largest that fits the model)`)
    .option('--keep-embedding-fp', 'keep the embedding/head in float16')
    .option('--eval-text <file>', 'text for perplexity before/after and the per-layer output errors (default: the bundled held-out text)')
    .requiredOption('--out <dir>', 'folder to write the quantized model to')
    .addOption(
      new Option(
        '--runtime <name>',
        'runtime perplexity is measured on (default: the one chat serves the model on: MLW_RUNTIME, else onnx when it loads, else tfjs)',
      ).choices(RUNTIME_NAMES),
    )
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, o: QuantizeOpts, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { backend?: BackendName; home?: string };
      const groupSize = o.groupSize === undefined ? undefined : parseNumber(o.groupSize, '--group-size', { integer: true, min: 1 });
      if (groupSize !== undefined && o.method !== 'w4') throw new UsageError('--group-size applies to --method w4 only');
      if (groupSize !== undefined && !(GROUP_SIZES as readonly number[]).includes(groupSize)) {
        throw new UsageError(`--group-size: ${groupSize} is not one of ${GROUP_SIZES.join(', ')}`);
      }
      const folder = readModelFolder(dir);
      o.evalText ??= bundledResources().evalTexts[0]?.path;
      if (o.evalText === undefined) throw new UsageError('quantize: --eval-text FILE is required (the bundled evaluation text is missing)');
      if (!fs.existsSync(o.evalText)) throw new UsageError(`--eval-text: ${o.evalText} not found`);
      // Without a tokenizer the text cannot be scored: sizes and per-layer errors (on fixed ids) only.
      const evalIds = hasTokenizer(folder.tokenizerDir) ? loadTokenizer(folder.tokenizerDir).encode(fs.readFileSync(o.evalText, 'utf8'), { bos: true }) : null;
      if (!evalIds && !o.json) process.stderr.write(`mlw quantize: no tokenizer in ${folder.tokenizerDir}: ${NO_PERPLEXITY.replace(/^P/, 'p')}\n`);
      const backend = await initBackend(g.backend);
      const job = cliJob('quantize', { quiet: o.json });
      let report;
      try {
        report = await quantizeJob(
          {
            modelDir: dir,
            outDir: o.out,
            method: o.method,
            groupSize,
            keepEmbeddingFp: o.keepEmbeddingFp,
            evalIds,
            evalSource: o.evalText,
            runtime: o.runtime,
          },
          job.ctx,
        );
      } finally {
        job.finish();
      }
      const store = openStore({ home: g.home });
      try {
        const recorded = recordQuantization(store, report);
        if (o.json) return printJson({ ...recorded.report, reportId: recorded.reportId, sourceModelId: recorded.sourceModelId });
        process.stdout.write(reportToMarkdown(recorded.report));
        process.stderr.write(
          `recorded as report ${recorded.reportId} of model ${recorded.sourceModelId} (quantized model ${recorded.outputModelId}) in ${store.layout.root} — ${describeBackend(backend)}\n`,
        );
      } finally {
        store.close();
      }
    });
}
