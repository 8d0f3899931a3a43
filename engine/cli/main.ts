// `mlw`: the workbench's command line, a thin layer over the engine.
// Exit status: 0 ok, 2 usage error, 1 runtime error (one line on stderr).
import { Command, CommanderError, Option } from 'commander';
import { BACKEND_NAMES } from '../backend/select';
import { UsageError } from './errors';
import { oneLine, printable } from '../errors';
import { registerEvalCommands } from './commands/eval';
import { registerExportCommands } from './commands/export';
import { registerHubCommands } from './commands/hub';
import { registerInspectCommands } from './commands/inspect';
import { registerJobCommands } from './commands/job';
import { registerLabCommands } from './commands/lab';
import { registerModelCommands } from './commands/model';
import { registerPretrainCommands } from './commands/pretrain';
import { registerQuantizeCommands } from './commands/quantize';
import { registerServeCommands } from './commands/serve';
import { registerStoreCommands } from './commands/store';
import { registerTrainCommands } from './commands/train';

export function buildProgram(): Command {
  const program = new Command('mlw')
    .description('MobileLLM Workbench: fine-tune, quantize, inspect and chat with MobileLLM models')
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: fastest that loads)').choices(BACKEND_NAMES))
    .option('--home <dir>', 'workbench data folder (default: MLW_HOME or the platform app-data folder)')
    .showHelpAfterError('(run mlw --help for usage)')
    .exitOverride();
  registerModelCommands(program);
  registerHubCommands(program);
  registerEvalCommands(program);
  registerInspectCommands(program);
  registerQuantizeCommands(program);
  registerServeCommands(program);
  registerStoreCommands(program);
  registerTrainCommands(program);
  registerPretrainCommands(program);
  registerExportCommands(program);
  registerJobCommands(program);
  registerLabCommands(program);
  // Sub-commands inherit the error handling of the root.
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit with 0; everything else commander raises is a usage error
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`mlw: ${printable(err.message)}\n`);
      return 2;
    }
    process.stderr.write(`mlw: error: ${oneLine(err)}\n`);
    if (process.env.MLW_DEBUG) console.error(err);
    return 1;
  }
}
