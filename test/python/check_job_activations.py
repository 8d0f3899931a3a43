"""The job's MobileLLM (resources/job/train.py) against the activation references (test/fixtures/activations).

    python3 test/python/check_job_activations.py <model folder> <reference.safetensors> …

Each model folder is the golden tiny-gqa with config.json's hidden_act set; each
reference holds transformers' input_ids, logits and grad.<param> for that act.
Prints one JSON object per pair: the loss (mean next-token cross-entropy over
B·(T−1) positions), max |Δlogits|, and per parameter max |Δgrad| / max |grad|.
Depends on PyTorch only.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'resources', 'job'))
import train  # noqa: E402


def check(model_dir, reference):
    with open(os.path.join(model_dir, 'config.json')) as f:
        config = json.load(f)
    ref = train.read_safetensors(reference)
    model = train.MobileLLM(train.Arch(config))
    train.load_weights(model, train.read_safetensors(os.path.join(model_dir, 'model.safetensors')))
    ids = ref['input_ids'].long()
    logits = model(ids)
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        want = ref[f'grad.{name}'].float()
        grads[name] = float((p.grad - want).abs().max() / want.abs().max())
    return {
        'act': model.a.act,
        'loss': float(loss),
        'logitsDiff': float((logits.detach() - ref['logits'].float()).abs().max()),
        'gradRelDiff': grads,
    }


if __name__ == '__main__':
    torch.set_num_threads(1)
    args = sys.argv[1:]
    print(json.dumps([check(args[i], args[i + 1]) for i in range(0, len(args), 2)]))
