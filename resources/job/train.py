#!/usr/bin/env python3
# The training program of a MobileLLM Workbench job folder (made by `mlw job export`).
#
#   torchrun --nproc_per_node=N train.py [--fsdp]        (or: python3 train.py, one process)
#
# It trains exactly what the workbench would have trained locally: the folder holds
# our tokenized, masked data (data/*.safetensors), the batch plan (which examples
# each optimizer step sees, as our trainer orders them), the base model, the
# initial LoRA adapter and job.json (hyper-parameters and seed). Depends on
# PyTorch only (safetensors is read and written by hand below).
#
#   model        MobileLLM: RMSNorm, RoPE (rotate-half), GQA, gated MLP (SwiGLU, or hidden_act's), tied embedding,
#                block-wise layer sharing (a shared block is one module run by several layers)
#   LoRA         y = base(x) + s · (dropout(x) · Aᵀ) · Bᵀ, PEFT names, s = α/r (α/√r with rsLoRA)
#   step         the plan's rows of step s split over the ranks, Σ w·nll / (learned tokens of
#                the whole step), gradients summed over ranks (DDP, or FSDP with --fsdp),
#                clipped to a global norm, AdamW (decoupled decay, not on norms) at lr(s)
#   precision    bf16 autocast on CUDA, float32 on CPU
#   resume       from the newest checkpoints/checkpoint-N: weights, AdamW moments and step;
#                data order and dropout masks are pure functions of (seed, step, row)
#   outputs      checkpoints/checkpoint-N in the workbench's layout, metrics.jsonl,
#                machine.json, done.json when finished
import argparse
import ctypes
import json
import math
import os
import shutil
import socket
import struct
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors

DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    """name → tensor (CPU) of a .safetensors file."""
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n].decode('utf-8'))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        dtype = DTYPES[info['dtype']]
        if end > begin:
            t = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype)
        else:
            t = torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info['shape'])
    return out


def write_safetensors(path, tensors, metadata=None):
    """Writes name → tensor (any device) as .safetensors, atomically (temp file, fsync, rename)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        t = t.detach().to('cpu').contiguous()
        nbytes = t.numel() * t.element_size()
        blobs.append(ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b'')
        header[name] = {'dtype': DTYPE_NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- counter-based randomness (engine/train/rng.ts)

def mix_seed(*parts):
    """The workbench's mixSeed: a 32-bit hash of a list of integers."""
    h = 0x9E3779B9
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        h ^= h >> 16
    return h


RNG_DROPOUT = 4

# ---------------------------------------------------------------- the model (engine/model/)


def sharing_schedule(num_blocks, strategy, repeats):
    """Effective layer → physical block (engine/model/sharing.ts)."""
    up = list(range(num_blocks))
    if strategy == 'none':
        return up
    if strategy == 'immediate':
        return [b for b in up for _ in range(repeats)]
    if strategy == 'repeat_all':
        return up * repeats
    if strategy == 'reverse':
        return [b for r in range(repeats) for b in (up if r % 2 == 0 else up[::-1])]
    raise ValueError(f'unknown layer sharing strategy {strategy!r}')


class Arch:
    """The keys of config.json we use, read as engine/model/config.ts reads them."""

    def __init__(self, c):
        self.vocab = c['vocab_size']
        self.hidden = c['hidden_size']
        self.inter = c['intermediate_size']
        self.blocks = c['num_hidden_layers']
        self.heads = c['num_attention_heads']
        self.kv_heads = c.get('num_key_value_heads') or self.heads
        self.head_dim = c.get('head_dim') or self.hidden // self.heads
        self.eps = c.get('rms_norm_eps', 1e-5)
        self.act = c.get('hidden_act', 'silu')
        if self.act not in ACTIVATIONS:
            raise ValueError(f'config.json: unsupported hidden_act {self.act!r} (expected one of {", ".join(ACTIVATIONS)})')
        self.theta = c.get('rope_theta') or (c.get('rope_parameters') or {}).get('rope_theta') or 10000.0
        share = c.get('share_embedding')
        self.tied = share if share is not None else bool(c.get('tie_word_embeddings', False))
        if c.get('layer_sharing'):
            self.schedule = sharing_schedule(self.blocks, c.get('layer_sharing_strategy', 'immediate'), c.get('layer_sharing_repeats', 2))
        else:
            self.schedule = list(range(self.blocks))


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def rope_tables(head_dim, theta, T, device):
    """cos, sin [T, d] rounded to float32 at each step as engine/model/rope.ts (ropeAngles) does."""
    half = head_dim // 2
    inv = [f32(1 / f32(theta ** f32(2 * i / head_dim))) for i in range(half)]
    pos = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    angle = (pos * torch.tensor(inv, dtype=torch.float64)).to(torch.float32).to(torch.float64)  # fround(t · invFreq)
    cos, sin = angle.cos().to(torch.float32), angle.sin().to(torch.float32)
    return torch.cat([cos, cos], 1).to(device), torch.cat([sin, sin], 1).to(device)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Dropout:
    """LoRA dropout masks, per row: a row's mask depends on (seed, step, its index in the step, site) only, so
    any split of a step over ranks, and a resumed run, draws the same masks. `keys` None: off (evaluation)."""

    def __init__(self, rate):
        self.rate = rate
        self.keys = None  # per row of the micro-batch: (key, length)

    def apply(self, x, site):
        if self.rate == 0 or self.keys is None:
            return x
        B, T, n = x.shape
        mask = torch.ones(B, T, n, device=x.device)
        for b, (key, length) in enumerate(self.keys):
            g = torch.Generator(device=x.device)
            g.manual_seed(mix_seed(key, site))
            keep = torch.rand(length, n, generator=g, device=x.device) >= self.rate
            mask[b, :length] = keep.float() / (1 - self.rate)
        return x * mask.to(x.dtype)


class LoraLinear(nn.Module):
    """A frozen linear plus s · B·A; lora_A.weight [r, in], lora_B.weight [out, r] as PEFT names them."""

    def __init__(self, base, r, scale, dropout, site):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.scale, self.dropout, self.site = scale, dropout, site

    def forward(self, x):
        h = self.lora_A(self.dropout.apply(x, self.site)) * self.scale
        return self.base(x) + self.lora_B(h)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.q_proj = nn.Linear(a.hidden, a.heads * a.head_dim, bias=False)
        self.k_proj = nn.Linear(a.hidden, a.kv_heads * a.head_dim, bias=False)
        self.v_proj = nn.Linear(a.hidden, a.kv_heads * a.head_dim, bias=False)
        self.o_proj = nn.Linear(a.heads * a.head_dim, a.hidden, bias=False)

    def forward(self, x, cos, sin):  # x [B, T, H]
        a = self.a
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, a.heads, a.head_dim).transpose(1, 2)  # [B, nh, T, d]
        k = self.k_proj(x).view(B, T, a.kv_heads, a.head_dim).transpose(1, 2)  # [B, nkv, T, d]
        v = self.v_proj(x).view(B, T, a.kv_heads, a.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = a.heads // a.kv_heads  # query head h reads kv head h // group
        k = k.repeat_interleave(group, 1)
        v = v.repeat_interleave(group, 1)
        if x.is_cuda and hasattr(F, 'scaled_dot_product_attention'):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(a.head_dim))
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            probs = scores.masked_fill(causal, -1e9).softmax(-1)
            out = probs @ v
        return self.o_proj(out.transpose(1, 2).reshape(B, T, a.heads * a.head_dim))


# The gated MLP's activation by hidden_act (engine/model/mlp.ts; transformers' ACT2FN):
# SwiGLU, ReGLU, GeGLU (exact erf) and GeGLU with the tanh approximation.
ACTIVATIONS = {
    'silu': F.silu,
    'relu': F.relu,
    'gelu': F.gelu,
    'gelu_pytorch_tanh': lambda x: F.gelu(x, approximate='tanh'),
}


class Mlp(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.act = ACTIVATIONS[a.act]
        self.gate_proj = nn.Linear(a.hidden, a.inter, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.inter, bias=False)
        self.down_proj = nn.Linear(a.inter, a.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden, a.eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden, a.eps)
        self.mlp = Mlp(a)

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Decoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.blocks))
        self.norm = RMSNorm(a.hidden, a.eps)


class MobileLLM(nn.Module):
    """Parameter names are the checkpoint's (model.layers.N.…); a shared block is one module run at each of its uses."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        self.model = Decoder(a)
        self.lm_head = None if a.tied else nn.Linear(a.hidden, a.vocab, bias=False)

    def forward(self, ids):  # ids [B, T] → logits [B, T, V]
        T = ids.shape[1]
        cos, sin = rope_tables(self.a.head_dim, self.a.theta, T, ids.device)
        x = self.model.embed_tokens(ids)
        for b in self.a.schedule:
            x = self.model.layers[b](x, cos, sin)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return x @ head.t()


LINEAR_KEYS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down']
LINEAR_NAMES = {'q': 'self_attn.q_proj', 'k': 'self_attn.k_proj', 'v': 'self_attn.v_proj', 'o': 'self_attn.o_proj',
                'gate': 'mlp.gate_proj', 'up': 'mlp.up_proj', 'down': 'mlp.down_proj'}
PEFT_PREFIX = 'base_model.model.'


def add_lora(model, lora):
    """Wraps the target linears of every physical block; returns the shared dropout."""
    scale = lora['alpha'] / math.sqrt(lora['rank']) if lora['rslora'] else lora['alpha'] / lora['rank']
    dropout = Dropout(lora['dropout'])
    for p in model.parameters():
        p.requires_grad_(False)
    for b, block in enumerate(model.model.layers):
        for key in LINEAR_KEYS:
            if key not in lora['targets']:
                continue
            parent_name, name = LINEAR_NAMES[key].split('.')
            parent = getattr(block, parent_name)
            setattr(parent, name, LoraLinear(getattr(parent, name), lora['rank'], scale, dropout, b * len(LINEAR_KEYS) + LINEAR_KEYS.index(key)))
    return dropout


def trainable_names(model):
    """Trained parameter → the name the workbench gives it (HF names, or PEFT names for adapters)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = PEFT_PREFIX + name if '.lora_' in name else name
    return out


def decays(name):
    """engine/train/optimizer.ts decaysByDefault: not on norm gains or biases."""
    return not (name.endswith('norm.weight') or name.endswith('layernorm.weight') or name.endswith('.bias'))


def draw_init(model, init):
    """Initial weights of a pre-training job exported with --init seed (engine/model/init.ts's distributions:
    N(0, std) truncated at 2 std, the residual outputs o_proj/down_proj at residualStd, norm gains 1), drawn from
    torch.Generator(seed) tensor by tensor in name order: the same on every rank and every launch."""
    g = torch.Generator().manual_seed(init['seed'])
    out = {}
    for name, p in sorted(model.named_parameters()):
        if name.endswith('norm.weight'):
            out[name] = torch.ones(p.shape)
            continue
        std = init['residualStd'] if name.endswith(('o_proj.weight', 'down_proj.weight')) else init['std']
        t = torch.randn(p.shape, generator=g)
        bad = t.abs() > 2
        while bad.any():  # redraw outside ±2 std, as tf.truncatedNormal does
            t[bad] = torch.randn(int(bad.sum()), generator=g)
            bad = t.abs() > 2
        out[name] = t * std
    return out


def load_weights(model, tensors):
    """Checkpoint tensors (HF names) into the model (float32); every tensor must be used."""
    own = {n: p for n, p in model.named_parameters()}
    own.update({n.replace('.base.', '.'): p for n, p in model.named_parameters() if '.base.' in n})
    for name, t in tensors.items():
        if name not in own:
            raise SystemExit(f'model.safetensors: unexpected tensor "{name}"')
        with torch.no_grad():
            own[name].copy_(t.float())
    missing = [n for n in own if '.lora_' not in n and '.base.' not in n and n not in tensors]
    if missing:
        raise SystemExit(f'model.safetensors: no tensor "{missing[0]}"')


# ---------------------------------------------------------------- data (engine/train/batching.ts)


class Examples:
    """Tokenized examples of a shard: ids and learn flags of example i are [offsets[i], offsets[i+1])."""

    def __init__(self, path):
        t = read_safetensors(path)
        self.ids, self.learn, self.offsets = t['ids'].long(), t['learn'], t['offsets'].tolist()

    def __len__(self):
        return len(self.offsets) - 1

    def row(self, i):
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.learn[a:b]

    def learned(self, rows):
        """Tokens whose prediction counts: learn[1:] of each row."""
        return sum(int(self.row(i)[1][1:].sum()) for i in rows)


def micro_batch(ex, rows, device, pad_id=0):
    """Right-padded ids [B, T], next-token targets [B, T] and weights [B, T] (padding and last positions weigh 0)."""
    T = max(len(ex.row(i)[0]) for i in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.zeros(len(rows), T, dtype=torch.long)
    weights = torch.zeros(len(rows), T)
    for b, i in enumerate(rows):
        r_ids, r_learn = ex.row(i)
        n = len(r_ids)
        ids[b, :n] = r_ids
        targets[b, :n - 1] = r_ids[1:]
        weights[b, :n - 1] = r_learn[1:].float()
    return ids.to(device), targets.to(device), weights.to(device)


def weighted_nll(logits, targets, weights, denom):
    """Σ w · nll / denom."""
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction='none')
    return (nll * weights.reshape(-1)).sum() / denom


# ---------------------------------------------------------------- schedule (engine/train/schedule.ts)


def learning_rate(step, s):
    W, S, peak = s['warmupSteps'], s['totalSteps'], s['lr']
    if step < W:
        return peak * step / max(1, W)
    span = max(1, S - W)
    if s['decay'] == 'constant':
        return peak
    if s['decay'] == 'linear':
        return peak * max(0.0, (S - step) / span)
    m = s.get('minLrRatio', 0)
    p = min(1.0, (step - W) / span)
    return peak * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p)))


# ---------------------------------------------------------------- checkpoints (engine/train/checkpoints.ts)


def ours(t):
    """A moment in the workbench's layout: 2-D tensors as [in, out] (transposed from PyTorch's [out, in])."""
    t = t.detach().float().cpu()
    return t.t().contiguous() if t.dim() == 2 else t


def theirs(t):
    return t.t().contiguous() if t.dim() == 2 else t


def checkpoint_steps(root):
    if not os.path.isdir(root):
        return []
    steps = []
    for name in os.listdir(root):
        if name.startswith('checkpoint-') and name[11:].isdigit() and os.path.exists(os.path.join(root, name, 'trainer_state.json')):
            steps.append(int(name[11:]))
    return sorted(steps)


class Job:
    def __init__(self, folder, args):
        self.dir = folder
        with open(os.path.join(folder, 'job.json')) as f:
            self.spec = json.load(f)
        self.args = args
        self.ckpt_root = os.path.join(folder, 'checkpoints')
        self.metrics_file = os.path.join(folder, 'metrics.jsonl')

    # --- distributed set-up
    def setup(self):
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        local = int(os.environ.get('LOCAL_RANK', '0'))
        cuda = torch.cuda.is_available() and self.args.device != 'cpu'
        self.device = torch.device('cuda', local) if cuda else torch.device('cpu')
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 or self.args.fsdp:  # FSDP needs a process group, of one process too
            dist.init_process_group('nccl' if cuda else 'gloo')
        self.autocast = cuda and not self.args.fp32

    def all_sum(self, x):
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device if self.device.type == 'cuda' else 'cpu')
        dist.all_reduce(t)
        return float(t.item())

    # --- model, adapters, optimizer
    def build(self):
        spec = self.spec
        with open(os.path.join(self.dir, 'model', 'config.json')) as f:
            self.config_json = json.load(f)
        torch.manual_seed(spec['train']['seed'])
        self.model = MobileLLM(Arch(self.config_json))
        resume = checkpoint_steps(self.ckpt_root)
        self.start = resume[-1] if resume else 0
        from_dir = os.path.join(self.ckpt_root, f'checkpoint-{self.start}') if resume else None
        lora = spec['method'] == 'lora'
        full_from = from_dir if from_dir and not lora else os.path.join(self.dir, 'model')
        weights_file = os.path.join(full_from, 'model.safetensors')
        if not os.path.exists(weights_file) and full_from == os.path.join(self.dir, 'model') and spec.get('init'):
            drawn = draw_init(self.model, spec['init'])
            if self.rank == 0:  # the folder then holds its initial weights, as one exported with --init folder
                write_safetensors(weights_file, drawn, {'format': 'pt'})
            load_weights(self.model, drawn)
        else:
            load_weights(self.model, read_safetensors(weights_file))
        self.dropout = None
        if lora:
            self.dropout = add_lora(self.model, spec['lora'])
            adapter = read_safetensors(os.path.join(from_dir or os.path.join(self.dir, 'init'), 'adapter_model.safetensors'))
            params = dict(self.model.named_parameters())
            for peft_name, t in adapter.items():
                with torch.no_grad():
                    params[peft_name[len(PEFT_PREFIX):]].copy_(t.float())
        self.model.to(self.device)
        self.names = trainable_names(self.model)
        self.state = {'step': 0, 'epoch': 0, 'seed': spec['train']['seed'], 'bestValLoss': None, 'elapsedMs': 0, 'tokensSeen': 0}
        moments = None
        if from_dir:
            with open(os.path.join(from_dir, 'trainer_state.json')) as f:
                self.state.update(json.load(f))
            moments = read_safetensors(os.path.join(from_dir, 'optimizer.safetensors'))
        self.net = self.wrap()
        adamw = spec['train']['adamw']
        params = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        groups = [
            {'params': [p for n, p in params if decays(clean(n))], 'weight_decay': adamw['weightDecay']},
            {'params': [p for n, p in params if not decays(clean(n))], 'weight_decay': 0.0},
        ]
        self.opt = torch.optim.AdamW([g for g in groups if g['params']], lr=spec['train']['lr'], betas=(adamw['beta1'], adamw['beta2']), eps=adamw['eps'])
        if moments is not None:
            self.load_moments(moments)

    def wrap(self):
        if self.args.fsdp:
            return self.wrap_fsdp()
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            return DDP(self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)
        return self.model

    def wrap_fsdp(self):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        import functools
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
        if tuple(int(x) for x in torch.__version__.split('.')[:2]) < (2, 1):
            raise SystemExit(f'--fsdp needs PyTorch 2.1 or newer (this is {torch.__version__}); use DDP (without --fsdp)')
        # A shared block runs several times per forward: it stays in the root unit then.
        policy = None if self.model.a.schedule != list(range(self.model.a.blocks)) else functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={Block})
        return FSDP(self.model, auto_wrap_policy=policy, use_orig_params=True, device_id=self.device if self.device.type == 'cuda' else None)

    def trained(self):
        """(workbench name, parameter) of every trained tensor, in the plain model."""
        params = dict(self.model.named_parameters())
        return [(ours_name, params[n]) for n, ours_name in self.names.items()]

    def load_moments(self, moments):
        if self.args.fsdp:
            return self.load_moments_fsdp(moments)
        step = torch.tensor(float(self.state['step']))
        for name, p in self.trained():
            self.opt.state[p] = {
                'step': step.clone(),
                'exp_avg': theirs(moments[f'{name}.exp_avg']).to(self.device),
                'exp_avg_sq': theirs(moments[f'{name}.exp_avg_sq']).to(self.device),
            }

    def load_moments_fsdp(self, moments):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        fqn = {ours_name: n for n, ours_name in self.names.items()}
        state = {fqn[k.rsplit('.', 1)[0]]: {} for k in moments}
        for k, t in moments.items():
            name, slot = k.rsplit('.', 1)
            state[fqn[name]][slot] = theirs(t)
            state[fqn[name]]['step'] = torch.tensor(float(self.state['step']))
        full = {'state': state, 'param_groups': self.opt.state_dict()['param_groups']}
        group_names = [[n for n, p in self.net.named_parameters() if p.requires_grad and decays(clean(n)) == (i == 0)] for i in range(2)]
        for g, names in zip(full['param_groups'], [n for n in group_names if n]):
            g['params'] = [clean(n) for n in names]
        self.opt.load_state_dict(FSDP.optim_state_dict_to_load(self.net, self.opt, full))

    def save(self, step, val_loss):
        """checkpoints/checkpoint-<step>: weights (model folder or PEFT adapter), optimizer.safetensors, trainer_state.json."""
        weights, moments = self.gather()
        if self.rank != 0:
            return
        final = os.path.join(self.ckpt_root, f'checkpoint-{step}')
        tmp = final + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        if self.spec['method'] == 'lora':
            write_safetensors(os.path.join(tmp, 'adapter_model.safetensors'), weights, {'format': 'pt'})
            shutil.copyfile(os.path.join(self.dir, 'init', 'adapter_config.json'), os.path.join(tmp, 'adapter_config.json'))
        else:
            write_safetensors(os.path.join(tmp, 'model.safetensors'), weights, {'format': 'pt'})
            for f in os.listdir(os.path.join(self.dir, 'model')):
                if f != 'model.safetensors':
                    shutil.copyfile(os.path.join(self.dir, 'model', f), os.path.join(tmp, f))
        write_safetensors(os.path.join(tmp, 'optimizer.safetensors'), moments, {'step': step})
        write_json(os.path.join(tmp, 'trainer_state.json'), self.state)
        if val_loss is not None:
            write_json(os.path.join(tmp, 'metrics.json'), {'val_loss': val_loss})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self.prune()

    def gather(self):
        """The trained weights (checkpoint names and layout) and AdamW moments (workbench layout), whole, on rank 0."""
        if self.args.fsdp:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, StateDictType, FullStateDictConfig, FullOptimStateDictConfig
            with FSDP.state_dict_type(self.net, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
                                      FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=True)):
                sd = self.net.state_dict()
                osd = FSDP.optim_state_dict(self.net, self.opt)
            by_fqn = {clean(k): v for k, v in osd.get('state', {}).items()}
            sd = {clean(k): v for k, v in sd.items()}
        else:
            sd = self.model.state_dict()
            by_fqn = {n: self.opt.state.get(p, {}) for n, p in self.model.named_parameters() if p.requires_grad}
        if self.rank != 0:
            return None, None
        if self.spec['method'] == 'lora':
            weights = {PEFT_PREFIX + n: v.detach().float().cpu() for n, v in sd.items() if '.lora_' in n}
        else:
            weights = {n.replace('.base.', '.'): v.detach().float().cpu() for n, v in sd.items()}
        moments = {}
        for n, ours_name in self.names.items():
            s = by_fqn.get(n, {})
            for slot in ('exp_avg', 'exp_avg_sq'):
                moments[f'{ours_name}.{slot}'] = ours(s[slot]) if slot in s else ours(torch.zeros_like(dict(self.model.named_parameters())[n]))
        return weights, moments

    def prune(self):
        keep_last = self.spec['train']['keepLast']
        steps = checkpoint_steps(self.ckpt_root)
        best, best_loss = None, None
        for s in steps:
            f = os.path.join(self.ckpt_root, f'checkpoint-{s}', 'metrics.json')
            if os.path.exists(f):
                with open(f) as fh:
                    v = json.load(fh).get('val_loss')
                if v is not None and (best_loss is None or v < best_loss):
                    best, best_loss = s, v
        for s in steps[:-keep_last]:
            if s != best:
                shutil.rmtree(os.path.join(self.ckpt_root, f'checkpoint-{s}'), ignore_errors=True)

    # --- the loop (engine/train/trainer.ts)
    def rank_rows(self, step_rows):
        """Rank r's contiguous share of a step's rows (global index in the step, example index)."""
        n = len(step_rows)
        chunk = -(-n // self.world)
        mine = list(enumerate(step_rows))[self.rank * chunk:(self.rank + 1) * chunk]
        return mine, -(-chunk // self.spec['train']['batchSize'])

    def forward(self, ids):
        if self.autocast:
            with torch.autocast('cuda', dtype=torch.bfloat16):
                return self.net(ids)
        return self.net(ids)

    def validate(self):
        val = self.val
        if val is None or len(val) == 0:
            return None
        rows = list(range(len(val)))
        denom = max(1, val.learned(rows))
        bs = self.spec['train']['batchSize']
        total = 0.0
        if self.dropout:
            self.dropout.keys = None
        self.net.eval()
        with torch.no_grad():
            for i in range(0, len(rows), bs):
                ids, targets, weights = micro_batch(val, rows[i:i + bs], self.device)
                total += float(weighted_nll(self.forward(ids), targets, weights, denom))
        self.net.train()
        return total

    def step(self, s, plan_rows):
        ex = self.train_set
        denom = max(1, ex.learned(plan_rows))
        mine, micros = self.rank_rows(plan_rows)
        bs = self.spec['train']['batchSize']
        loss, tokens = 0.0, 0
        seed = self.spec['train']['seed']
        for m in range(micros):
            chunk = mine[m * bs:(m + 1) * bs]
            # A rank with fewer rows still takes part (DDP/FSDP need every rank in every pass): its first row at weight 0.
            rows = [i for _, i in chunk] or [plan_rows[0]]
            ids, targets, weights = micro_batch(ex, rows, self.device)
            if not chunk:
                weights.zero_()
            if self.dropout:
                self.dropout.keys = [(mix_seed(seed, RNG_DROPOUT, s, g), len(ex.row(i)[0])) for g, i in (chunk or [(0, rows[0])])]
            sync = m == micros - 1 or self.world == 1 or not hasattr(self.net, 'no_sync')
            ctx = self.net.no_sync() if not sync else _Null()
            with ctx:
                part = weighted_nll(self.forward(ids), targets, weights, denom)
                # DDP and FSDP average the ranks' gradients; the step's gradient is their sum.
                (part * self.world).backward()
            loss += float(part)
            tokens += sum(len(ex.row(i)[0]) for _, i in chunk)
        return self.all_sum(loss), int(self.all_sum(tokens))

    def run(self):
        self.setup()
        spec = self.spec
        self.train_set = Examples(os.path.join(self.dir, 'data', 'train.safetensors'))
        val_file = os.path.join(self.dir, 'data', 'val.safetensors')
        self.val = Examples(val_file) if os.path.exists(val_file) else None
        plan = read_safetensors(os.path.join(self.dir, 'data', 'plan.safetensors'))['plan']
        self.build()
        t = spec['train']
        total = spec['totalSteps'] if self.args.max_steps is None else min(spec['totalSteps'], self.args.max_steps)
        schedule = {**t, 'totalSteps': spec['totalSteps']}
        if self.rank == 0:
            self.write_machine()
            self.trim_metrics(self.state['step'])
        s = self.state['step']
        last_save = time.time()
        max_norm = t['maxGradNorm'] if t['maxGradNorm'] > 0 else float('inf')
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.net.train()
        while s < total:
            t0 = time.time()
            rows = [int(i) for i in plan[s].reshape(-1).tolist() if i >= 0]
            loss, tokens = self.step(s, rows)
            lr = learning_rate(s, schedule)
            for g in self.opt.param_groups:
                g['lr'] = lr
            if self.args.fsdp:
                norm = float(self.net.clip_grad_norm_(max_norm))
            else:
                norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            s += 1
            ms = (time.time() - t0) * 1000
            self.state.update(step=s, epoch=(s - 1) // spec['stepsPerEpoch'], elapsedMs=self.state['elapsedMs'] + ms, tokensSeen=self.state['tokensSeen'] + tokens)
            last = s == spec['totalSteps']
            val_loss = self.validate() if last or (t['evalEvery'] > 0 and s % t['evalEvery'] == 0) else None
            if val_loss is not None and (self.state['bestValLoss'] is None or val_loss < self.state['bestValLoss']):
                self.state['bestValLoss'] = val_loss
            if self.rank == 0:
                point = {'step': s, 'loss': loss, 'lr': lr, 'grad_norm': norm, 'tokens': tokens, 'tokens_per_s': tokens / max(ms / 1000, 1e-9), 'time': time.time()}
                if val_loss is not None:
                    point['val_loss'] = val_loss
                if self.device.type == 'cuda':
                    point['gpu_memory_gb'] = torch.cuda.max_memory_allocated(self.device) / 1024 ** 3
                with open(self.metrics_file, 'a') as f:
                    f.write(json.dumps(point) + '\n')
                    f.flush()
                    os.fsync(f.fileno())
            by_steps = t['saveEvery'] > 0 and s % t['saveEvery'] == 0
            by_time = t['saveEveryMinutes'] > 0 and time.time() - last_save >= t['saveEveryMinutes'] * 60
            if self.world > 1:
                by_time = self.all_sum(1.0 if by_time else 0.0) > 0  # every rank takes part in saving
            if last or by_steps or by_time or s == total:
                self.save(s, val_loss)
                last_save = time.time()
        if self.rank == 0 and s == spec['totalSteps']:
            write_json(os.path.join(self.dir, 'done.json'), {'step': s, 'finishedAt': time.time()})
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()

    def trim_metrics(self, step):
        """A relaunch continues from its checkpoint: the lines after it are dropped (they are trained again)."""
        if not os.path.exists(self.metrics_file):
            return
        with open(self.metrics_file) as f:
            lines = [ln for ln in f if ln.strip()]
        kept = []
        for ln in lines:
            try:
                if json.loads(ln)['step'] <= step:
                    kept.append(ln)
            except (ValueError, KeyError):
                pass  # a line cut by the kill
        tmp = self.metrics_file + '.tmp'
        with open(tmp, 'w') as f:
            f.writelines(kept)
        os.replace(tmp, self.metrics_file)

    def write_machine(self):
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if self.device.type == 'cuda' else []
        write_json(os.path.join(self.dir, 'machine.json'), {
            'hostname': socket.gethostname(), 'gpus': gpus, 'torch': torch.__version__, 'python': sys.version.split()[0],
            'worldSize': self.world, 'device': self.device.type, 'fsdp': bool(self.args.fsdp),
            'precision': 'bf16-autocast' if self.autocast else 'float32', 'startedAt': time.time(), 'resumedFromStep': self.state['step'],
        })


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def clean(name):
    """A parameter's name without the wrappers' prefixes (DDP's module., FSDP's _fsdp_wrapped_module.)."""
    for prefix in ('module.', '_fsdp_wrapped_module.', '_checkpoint_wrapped_module.'):
        name = name.replace(prefix, '')
    return name


def main():
    p = argparse.ArgumentParser(description='Train a MobileLLM Workbench job (see README.md in the job folder).')
    p.add_argument('--job', default=os.path.dirname(os.path.abspath(__file__)), help='the job folder (default: the folder of this file)')
    p.add_argument('--fsdp', action='store_true', help='shard parameters, gradients and optimizer state (FSDP) instead of replicating them (DDP)')
    p.add_argument('--device', choices=['auto', 'cpu'], default='auto', help='cpu: ignore GPUs')
    p.add_argument('--fp32', action='store_true', help='no bf16 autocast on GPUs')
    p.add_argument('--max-steps', type=int, default=None, help='stop (with a checkpoint) after this many steps; a relaunch continues')
    args = p.parse_args()
    Job(args.job, args).run()


if __name__ == '__main__':
    main()
