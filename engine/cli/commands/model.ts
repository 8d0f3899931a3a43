// mlw info / score / generate / tokenize: one model folder, no store needed.
import path from 'node:path';
import { Option, type Command } from 'commander';
import { backendInfo, describeBackend, initBackend, type BackendName } from '../../backend/select';
import { countParams, effectiveDepth, GATED_MLP_NAMES, layerSchedule } from '../../model/config';
import { hasTokenizer, loadTokenizer, type Tokenizer } from '../../tokenizer/tokenizer';
import { generate } from '../../generate/generate';
import { RUNTIME_NAMES, type RuntimeName } from '../../runtime/runtime';
import { openRuntime } from '../../folder/inference';
import { readModelFolder, type ModelFolder } from '../../folder/kind';
import { checkModelFolder } from '../../folder/load';
import { encodeChatText, loadChatTemplate } from '../../chat/template';
import { DEFAULT_SAMPLING } from '../../generate/sampling';
import { UsageError } from '../errors';
import { parseIdList, parseNumber, printJson } from '../format';
import { describeSpec } from '../../quant/spec';

interface GlobalOpts {
  backend?: BackendName;
}

async function backendFor(cmd: Command) {
  return initBackend((cmd.optsWithGlobals() as GlobalOpts).backend);
}

const runtimeOption = () =>
  new Option('--runtime <name>', 'inference runtime (default: MLW_RUNTIME, else onnx when onnxruntime-node loads, else tfjs)').choices(RUNTIME_NAMES);

/** Opens a model folder (an adapter: merged into its base) on the chosen runtime; says on stderr why a faster one was skipped. */
async function runtimeFor(folder: ModelFolder, runtime: RuntimeName | undefined) {
  const choice = await openRuntime(folder, { runtime });
  for (const line of choice.skipped) process.stderr.write(`mlw: runtime ${line}; using ${choice.runtime.name}\n`);
  return choice.runtime;
}

function tokenizerOrUsage(dir: string, why: string): Tokenizer {
  try {
    return loadTokenizer(dir);
  } catch (e) {
    throw new Error(`${why} needs a tokenizer: ${(e as Error).message}`, { cause: e });
  }
}

export function registerModelCommands(program: Command): void {
  program
    .command('info')
    .description('show a model folder: config, parameter counts, effective depth, sharing schedule')
    .argument('<modelDir>', 'model folder, quantized model folder or LoRA adapter folder')
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { json?: boolean }, cmd: Command) => {
      const folder = readModelFolder(dir);
      const { config, quantization, adapter } = folder;
      const { format, storedDtype: dtype } = checkModelFolder(folder);
      const info = await backendFor(cmd);
      const counts = countParams(config);
      const schedule = layerSchedule(config);
      const result = {
        path: path.resolve(dir),
        kind: folder.kind,
        format,
        dtype,
        // Quantized folders (engine/quant): method and options; null for a float model.
        quantization,
        // An adapter: its LoRA options and the base model whose architecture this is.
        adapter: adapter && { base: path.resolve(folder.modelDir), ...adapter.options },
        config,
        params: { total: counts.total, embedding: counts.embedding, non_embedding: counts.nonEmbedding, per_block: counts.perBlock },
        unique_blocks: config.numBlocks,
        effective_depth: effectiveDepth(config),
        sharing: config.sharing,
        schedule,
        backend: info.name,
        threads: info.threads,
      };
      if (opts.json) return printJson(result);
      const m = (n: number) => `${(n / 1e6).toFixed(2)}M`;
      const lines = [
        `model        ${result.path} (${format}, ${dtype})`,
        `shape        hidden ${config.hiddenSize}, intermediate ${config.intermediateSize}, heads ${config.numHeads}/${config.numKvHeads} kv, head dim ${config.headDim}, vocab ${config.vocabSize}`,
        `mlp          ${GATED_MLP_NAMES[config.hiddenAct]} (hidden_act ${config.hiddenAct})`,
        `parameters   ${m(counts.total)} total = ${m(counts.embedding)} embedding + ${m(counts.nonEmbedding)} non-embedding`,
        `embedding    ${config.shareEmbedding ? 'shared with the output head' : 'separate output head'}`,
        `depth        ${result.effective_depth} effective layers from ${config.numBlocks} blocks (sharing: ${config.sharing.strategy}${config.sharing.strategy === 'none' ? '' : ` ×${config.sharing.repeats}`})`,
        `schedule     ${schedule.join(' ')}`,
        `context      ${config.maxPositions} tokens, rope θ ${config.ropeTheta}`,
        `backend      ${describeBackend(info)}`,
      ];
      if (quantization) lines.splice(1, 0, `quantized    ${describeSpec(quantization)}`);
      if (adapter) {
        const o = adapter.options;
        lines.splice(
          1,
          0,
          `adapter      LoRA rank ${o.rank}, alpha ${o.alpha}${o.rslora ? ' (rsLoRA)' : ''} on ${o.targets.join(', ')}; base model ${result.adapter!.base}`,
        );
      }
      console.log(lines.join('\n'));
    });

  program
    .command('score')
    .description('log-probability of each token given the ones before it, total NLL and perplexity')
    .argument('<modelDir>', 'model folder, quantized model folder or LoRA adapter folder')
    .option('--ids <ids>', 'comma-separated token ids')
    .option('--text <text>', 'text to tokenize (BOS is prepended)')
    .addOption(runtimeOption())
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { ids?: string; text?: string; runtime?: RuntimeName; json?: boolean }, cmd: Command) => {
      if ((opts.ids === undefined) === (opts.text === undefined)) throw new UsageError('score: give exactly one of --ids or --text');
      const folder = readModelFolder(dir);
      await backendFor(cmd);
      const ids = opts.ids !== undefined ? parseIdList(opts.ids, '--ids') : tokenizerOrUsage(folder.tokenizerDir, '--text').encode(opts.text!, { bos: true });
      const vocab = folder.config.vocabSize;
      const bad = ids.find((id) => id >= vocab);
      if (bad !== undefined) throw new UsageError(`--ids: token id ${bad} is outside the vocabulary (size ${vocab})`);
      const runtime = await runtimeFor(folder, opts.runtime);
      const s = await runtime.score(ids).finally(() => runtime.dispose());
      if (opts.json) return printJson({ ids: s.ids, logprobs: s.logprobs, nll: s.nll, ppl: s.ppl, backend: backendInfo().name, runtime: runtime.name });
      console.log(`tokens ${ids.length}  nll ${s.nll.toFixed(4)}  ppl ${s.ppl.toFixed(3)}  (${runtime.describe()})`);
      console.log(s.logprobs.map((lp, i) => `${ids[i + 1]}\t${lp.toFixed(5)}`).join('\n'));
    });

  program
    .command('generate')
    .description('continue a prompt (streams text); temperature 0 is greedy')
    .argument('<modelDir>', 'model folder, quantized model folder or LoRA adapter folder')
    .option('--prompt <text>', 'prompt text (BOS is prepended)')
    .option('--prompt-ids <ids>', 'comma-separated prompt token ids')
    .option('--max-new-tokens <n>', 'tokens to generate', '128')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', String(DEFAULT_SAMPLING.temperature))
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', String(DEFAULT_SAMPLING.topK))
    .option('--top-p <p>', 'nucleus sampling mass (1 = off)', String(DEFAULT_SAMPLING.topP))
    .option('--repetition-penalty <r>', 'penalty for tokens already present (1 = off)', '1')
    .option('--seed <s>', 'random seed for sampling')
    .option('--no-eos', 'keep generating past the end-of-sequence token')
    .addOption(runtimeOption())
    .option('--chat', "--prompt is a question: render it with the model's chat template, as the chat window does, and print the answer")
    .option('--json', 'print JSON instead of streaming text')
    .action(async (dir: string, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      if ((o.prompt === undefined) === (o.promptIds === undefined)) throw new UsageError('generate: give exactly one of --prompt or --prompt-ids');
      if (o.chat && o.prompt === undefined) throw new UsageError('generate: --chat needs --prompt');
      const sampling = {
        maxNewTokens: parseNumber(o.maxNewTokens as string, '--max-new-tokens', { integer: true, min: 1 }),
        temperature: parseNumber(o.temperature as string, '--temperature', { min: 0 }),
        topK: parseNumber(o.topK as string, '--top-k', { integer: true, min: 0 }),
        topP: parseNumber(o.topP as string, '--top-p', { min: 0, max: 1 }),
        repetitionPenalty: parseNumber(o.repetitionPenalty as string, '--repetition-penalty', { min: 0 }),
        seed: o.seed === undefined ? undefined : parseNumber(o.seed as string, '--seed', { integer: true }),
        stopAtEos: o.eos !== false,
      };
      const folder = readModelFolder(dir);
      await backendFor(cmd);
      const tokDir = folder.tokenizerDir;
      const tokenizer = o.prompt !== undefined || !o.json ? tokenizerOrUsage(tokDir, 'text generation') : undefined;
      const template = o.chat ? loadChatTemplate(tokDir, tokenizer!.idToPiece(tokenizer!.bosId), tokenizer!.idToPiece(tokenizer!.eosId)) : undefined;
      const promptIds =
        o.promptIds !== undefined
          ? parseIdList(o.promptIds as string, '--prompt-ids')
          : template
            ? encodeChatText(tokenizer!, template.render([{ role: 'user', content: o.prompt as string }], true))
            : tokenizer!.encode(o.prompt as string, { bos: true });
      const runtime = await runtimeFor(folder, o.runtime as RuntimeName | undefined);
      // A chat answer ends where a base model starts writing the next turn itself; it is printed whole.
      const stop = new AbortController();
      let answer = '';
      const stream = tokenizer?.streamDecoder();
      const result = await generate(runtime, promptIds, { ...sampling, signal: stop.signal }, (t) => {
        if (!stream) return;
        const piece = stream.push(t.id);
        if (template) {
          answer += piece;
          if (template.cutAtStop(answer).stopped) stop.abort();
        } else if (!o.json) process.stdout.write(piece);
      }).finally(() => runtime.dispose());
      if (template) answer = template.cutAtStop(answer + stream!.flush()).text.trim();
      if (o.json) {
        return printJson({
          prompt_ids: promptIds,
          ids: result.ids,
          text: template ? answer : tokenizer ? tokenizer.decode(result.ids) : null,
          finish: result.finish,
          runtime: runtime.name,
        });
      }
      process.stdout.write(template ? answer + '\n' : stream ? stream.flush() + '\n' : '');
      const secs = (result.totalMs - result.firstTokenMs) / 1000;
      const rate = result.ids.length > 1 ? ((result.ids.length - 1) / secs).toFixed(1) : '-';
      process.stderr.write(
        `[${result.ids.length} tokens, ${result.finish}; first token ${result.firstTokenMs.toFixed(0)} ms, ${rate} tokens/s, ${runtime.describe()}]\n`,
      );
    });

  program
    .command('tokenize')
    .description('text → token ids and pieces')
    .argument('<modelDir>', "folder with tokenizer.model or tokenizer.json, or a LoRA adapter folder (its base model's tokenizer when it has none)")
    .requiredOption('--text <text>', 'text to tokenize')
    .option('--bos', 'prepend the beginning-of-sequence token')
    .option('--json', 'print JSON')
    .action((dir: string, opts: { text: string; bos?: boolean; json?: boolean }) => {
      const tok = loadTokenizer(hasTokenizer(dir) ? dir : readModelFolder(dir).tokenizerDir);
      const ids = tok.encode(opts.text, { bos: !!opts.bos });
      const pieces = ids.map((id) => tok.idToPiece(id));
      if (opts.json) return printJson({ ids, pieces });
      console.log(ids.map((id, i) => `${id}\t${pieces[i]}`).join('\n'));
    });
}
