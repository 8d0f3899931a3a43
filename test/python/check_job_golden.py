"""The job's MobileLLM (resources/job/train.py) against the golden vectors of transformers.

    python3 test/python/check_job_golden.py test/fixtures/golden/tiny-ls-immediate …

For each golden case folder: builds the model from its config.json and weights,
computes the golden loss (mean next-token cross-entropy over B·(T−1)
positions of input_ids) and its gradients, and prints one JSON object per case:
the loss difference, the parameter names (a shared block once), and for every
parameter max |Δgrad| / max |grad|. Depends on PyTorch only.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'resources', 'job'))
import train  # noqa: E402


def check(case_dir):
    with open(os.path.join(case_dir, 'config.json')) as f:
        config = json.load(f)
    with open(os.path.join(case_dir, 'expected.json')) as f:
        expected = json.load(f)
    gold = train.read_safetensors(os.path.join(case_dir, 'expected.safetensors'))
    model = train.MobileLLM(train.Arch(config))
    train.load_weights(model, train.read_safetensors(os.path.join(case_dir, 'model.safetensors')))
    ids = gold['input_ids'].long()
    logits = model(ids)
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        want = gold[f'grad.{name}'].float()
        grads[name] = float((p.grad - want).abs().max() / want.abs().max())
    return {
        'case': os.path.basename(case_dir.rstrip('/')),
        'loss': float(loss),
        'lossDiff': abs(float(loss) - expected['loss']),
        'schedule': model.a.schedule,
        'params': sorted(n for n, _ in model.named_parameters()),
        'gradRelDiff': grads,
    }


if __name__ == '__main__':
    torch.set_num_threads(1)
    print(json.dumps([check(d) for d in sys.argv[1:]]))
