// mlw pull: a model from the Hugging Face Hub into the workbench home,
// verified and recorded; run it again to resume an interrupted download.
import type { Command } from 'commander';
import { DEFAULT_ENDPOINT, envEndpoint, isRepoId } from '../../hub/api';
import { pullModel } from '../../hub/pull';
import { CancelledError } from '../../jobs/job';
import { openStore } from '../../store/open';
import { UsageError } from '../errors';
import { formatBytes, printJson } from '../format';
import { cliJob } from '../progress';

interface PullOpts {
  revision: string;
  token?: string;
  endpoint?: string;
  json?: boolean;
}

export function registerHubCommands(program: Command): void {
  program
    .command('pull')
    .description('download a model from the Hugging Face Hub (config, weights, tokenizer), verify it and record it')
    .argument('<repo>', 'model id on the Hub, e.g. facebook/MobileLLM-125M')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--token <token>', 'access token for gated or private repos (default: HF_TOKEN)')
    .option('--endpoint <url>', `Hub address (default: HF_ENDPOINT or ${DEFAULT_ENDPOINT})`)
    .option('--json', 'print JSON')
    .action(async (repo: string, o: PullOpts, cmd: Command) => {
      if (!isRepoId(repo)) throw new UsageError(`pull: "${repo}" is not a Hub model id (owner/name, e.g. facebook/MobileLLM-125M)`);
      const endpoint = o.endpoint ?? envEndpoint();
      if (!/^https?:\/\/[^/]/.test(endpoint)) throw new UsageError(`--endpoint: "${endpoint}" is not an http(s) URL`);
      const store = openStore({ home: (cmd.optsWithGlobals() as { home?: string }).home });
      try {
        const job = cliJob(`pull ${repo}`, { quiet: o.json });
        let r;
        try {
          r = await pullModel({ store, repo, revision: o.revision, token: o.token, endpoint }, job.ctx);
        } catch (err) {
          if (err instanceof CancelledError) throw new Error(`pull ${repo}: stopped; run the same command again to resume`, { cause: err });
          throw err;
        } finally {
          job.finish();
        }
        if (o.json) {
          return printJson({
            modelId: r.model.id,
            name: r.model.name,
            path: r.model.path,
            repo: r.repo,
            revision: r.revision,
            commit: r.commit,
            alreadyRecorded: r.alreadyRecorded,
            bytes: r.bytes,
            files: r.files,
          });
        }
        const fetched = r.files.filter((f) => !f.present).length;
        console.log(
          `${r.repo}@${r.revision} (commit ${r.commit.slice(0, 10)}) → ${r.model.path}\n` +
            `${r.files.length} files, ${formatBytes(r.bytes)} (${fetched} downloaded, ${r.files.length - fetched} already here); ` +
            `${r.alreadyRecorded ? 'already recorded' : 'recorded'} as model ${r.model.id} "${r.model.name}"`,
        );
      } finally {
        store.close();
      }
    });
}
