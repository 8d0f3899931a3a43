// The launch recipes of a job folder: README.md (what is in it, the torchrun
// command, resuming, bringing the results back), a Slurm sbatch script and a
// SkyPilot task file.
import type { JobSpec } from './spec';

function readme(spec: JobSpec, name: string): string {
  const what = spec.method === 'lora' ? `LoRA (rank ${spec.lora!.rank}, targets ${spec.lora!.targets.join(', ')})` : 'full fine-tuning';
  const t = spec.train;
  return `# MobileLLM Workbench job ${spec.id}

${what} of \`model/\` for ${spec.totalSteps} optimizer steps: ${t.batchSize} sequences per micro-batch × ${t.gradAccum} micro-batches per step (the global batch, whatever the number of processes), peak learning rate ${t.lr}, ${t.decay} decay after ${t.warmupSteps} warmup steps, seed ${t.seed}.

| path | what |
| --- | --- |
| \`job.json\` | hyper-parameters, seed, step count, the workbench configuration |
| \`model/\` | the base model (Hugging Face layout, float32) |
| \`init/\` | LoRA: the initial adapter (PEFT layout) |
| \`data/\` | the training and validation examples tokenized and masked by the workbench, and the batch plan (which examples each step sees) |
| \`train.py\` | the training program: PyTorch only |

## Run

Needs Python 3 and PyTorch (Debian's \`python3-torch\` is enough on CPU). On one machine with N GPUs:

\`\`\`sh
cd ${name}
torchrun --nproc_per_node=N train.py            # DDP: each GPU holds the model
torchrun --nproc_per_node=N train.py --fsdp     # FSDP: parameters, gradients and optimizer state sharded (PyTorch ≥ 2.1)
\`\`\`

On several machines: \`torchrun --nnodes=M --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --nproc_per_node=N train.py\`. On CPU: \`python3 train.py\` (or \`torchrun --nproc_per_node=2 train.py\`, gloo; Debian's PyTorch 1.13 under Python 3.11 needs \`torchrun --redirects 1 --tee 2 …\`, its parser refuses the default 0). GPUs train in bf16 autocast (\`--fp32\` turns it off), CPUs in float32.

Launched again after a kill or a preemption, it continues from its newest checkpoint (weights, AdamW moments, step; the data order and dropout masks follow from the seed and the step).

- Slurm: \`sbatch job.sbatch\` (edit the partition and GPU count).
- SkyPilot: \`sky launch -c mlw sky.yaml\` (uploads this folder; \`sky exec mlw sky.yaml\` relaunches it).

## Outputs

- \`metrics.jsonl\`: one line per step (step, loss, lr, grad_norm, tokens, tokens_per_s, val_loss when validated)
- \`checkpoints/checkpoint-N/\`: ${spec.method === 'lora' ? 'a PEFT adapter' : 'a model folder'} + optimizer.safetensors + trainer_state.json (the workbench's layout; the last ${t.keepLast} and the best are kept)
- \`machine.json\`: hostname, GPUs, torch version, number of processes; \`done.json\` once finished

## Back in the workbench

Copy the folder back (or mount it) and run \`mlw job import ${name}\`: the run appears on the Runs page with its curves and checkpoints. Import again while it runs to extend it.
`;
}

function sbatch(spec: JobSpec, name: string): string {
  return `#!/bin/bash
# Slurm: sbatch job.sbatch (from the job folder). One node; set the GPUs per node.
#SBATCH --job-name=mlw-${spec.id.slice(0, 8)}
#SBATCH --nodes=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=slurm-%j.out
# A requeued (preempted) job continues from its newest checkpoint.
set -euo pipefail
cd "\${SLURM_SUBMIT_DIR:-$(dirname "$0")}"
GPUS=\${SLURM_GPUS_ON_NODE:-1}
srun torchrun --nnodes=1 --nproc_per_node="$GPUS" train.py
# job: ${name}
`;
}

function sky(spec: JobSpec, name: string): string {
  return `# SkyPilot: sky launch -c mlw sky.yaml (from the job folder); copy back with: rsync -a mlw:~/sky_workdir/ ./${name}/
name: mlw-${spec.id.slice(0, 8)}
resources:
  accelerators: H100:1
workdir: .
setup: |
  python3 -c "import torch" || pip install torch
run: |
  torchrun --nproc_per_node=$SKYPILOT_NUM_GPUS_PER_NODE train.py
`;
}

/** File name → contents of the recipes of job `spec` in a folder named `name`. */
export function launchFiles(spec: JobSpec, name: string): Record<string, string> {
  return { 'README.md': readme(spec, name), 'job.sbatch': sbatch(spec, name), 'sky.yaml': sky(spec, name) };
}
