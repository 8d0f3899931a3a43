"""Loads our hf exports with the real Python clients and records what they compute.

Run on a machine with torch, transformers and peft (the GPU machine), in the
folder test/python/make-exports.ts wrote (its cases.json says what to load):

    python test/python/check_exports.py <exports folder> <results.json>

For every scored case: per-token log-probs of its ids (log p(ids[i+1] | ids[..i]))
and greedy tokens (decoded through the KV cache) after the first
promptTokens ids. For every refusal case: whether loading raised, and the
error's first line. For every saved case: the config.json and tensor names
save_pretrained writes. Also the default model's text as the tokenizers library
and AutoTokenizer encode it. test/export-hf.test.ts compares the results,
committed under test/fixtures/python-exports/, with our scores.
"""

import json
import logging
import os
import sys
import traceback
import warnings

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM


class Collected(logging.Handler):
    """transformers' and peft's log warnings while a folder loads."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage().split("\n")[0][:300])


def load_logged(case):
    handler = Collected()
    loggers = [logging.getLogger("transformers"), logging.getLogger("peft")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = load(case)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    return model, handler.lines + [str(w.message).split("\n")[0][:300] for w in caught]


def load(case):
    dtype = torch.float32 if case["dtype"] == "float32" else "auto"
    folder = case["dir"]
    if case["loader"] == "auto":
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if case["loader"] == "remote":
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=True)
    if case["loader"] == "llama":
        return LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    if case["loader"] in ("peft", "peft-remote"):
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=case["loader"] == "peft-remote")
    raise ValueError(f"unknown loader {case['loader']}")


def device_for(model):
    # float32 on the CPU (no TF32 matmuls); float16 where it is meant to run.
    if next(model.parameters()).dtype == torch.float16 and torch.cuda.is_available():
        return "cuda"
    return "cpu"


@torch.no_grad()
def score(model, ids, prompt_tokens, new_tokens):
    device = device_for(model)
    model = model.to(device).eval()
    x = torch.tensor([ids], device=device)
    logits = model(x).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    logprobs = logp.gather(1, x[0, 1:, None])[:, 0].cpu().tolist()
    # Greedy decoding through the KV cache (each effective layer of a shared model has its own slot).
    out = model(x[:, :prompt_tokens], use_cache=True)
    greedy = []
    for _ in range(new_tokens):
        token = out.logits[0, -1].argmax().item()
        greedy.append(token)
        out = model(torch.tensor([[token]], device=device), past_key_values=out.past_key_values, use_cache=True)
    return {
        "device": device,
        "computeDtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "logprobs": logprobs,
        "greedy": greedy,
    }


def depth(model):
    config = model.config
    return {"class": type(model).__name__, "numHiddenLayers": config.num_hidden_layers, "modules": len(list(model.model.layers))}


def restore_shipped(folder):
    """model.safetensors sent as its header + a committed file holding the same tensors (make-exports.ts)."""
    import hashlib

    ship_file = os.path.join(folder, "model.safetensors.ship.json")
    if not os.path.exists(ship_file):
        return
    with open(ship_file) as f:
        ship = json.load(f)
    with open(os.path.join(folder, "model.safetensors.header"), "rb") as f:
        header = f.read()
    with open(os.path.join(folder, ship["tensorsFrom"]), "rb") as f:
        source = f.read()
    source_len = int.from_bytes(source[:8], "little")
    source_tensors = json.loads(source[8 : 8 + source_len])
    ours = json.loads(header[8:])
    parts = [header]
    for name in sorted((k for k in ours if k != "__metadata__"), key=lambda k: ours[k]["data_offsets"][0]):
        start, end = source_tensors[name]["data_offsets"]
        parts.append(source[8 + source_len + start : 8 + source_len + end])
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != ship["sha256"]:
        raise ValueError(f"{folder}: the restored model.safetensors is not the file exported")
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(data)


def main(folder, results_file):
    results_file = os.path.abspath(results_file)
    os.chdir(folder)  # an adapter names its base by a folder name, resolved here (as on a user's machine)
    with open("cases.json") as f:
        cases = json.load(f)
    for name in os.listdir("."):
        if os.path.isdir(name):
            restore_shipped(name)
    import peft
    import tokenizers

    import inspect

    from transformers.models.llama import modeling_llama

    loop = [line.strip() for line in inspect.getsource(modeling_llama.LlamaModel.forward).splitlines() if "self.layers" in line]
    results = {
        # The line of LlamaModel.forward our modeling file relies on (it slices self.layers).
        "llamaLayerLoop": loop,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "tokenizers": tokenizers.__version__},
        "scored": [],
        "refusals": [],
    }
    for case in cases["scored"]:
        entry = {"name": case["name"], "dir": case["dir"], "loader": case["loader"], "dtype": case["dtype"]}
        try:
            model, logged = load_logged(case)
            entry.update(score(model, case["ids"], cases["promptTokens"], cases["newTokens"]))
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            entry["loaded"] = depth(base)
            entry["warnings"] = logged[:8]
        except Exception as e:  # recorded, so that one failure does not hide the others
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            entry["traceback"] = traceback.format_exc().splitlines()[-6:]
        results["scored"].append(entry)
        print(case["name"], "error" in entry and entry["error"] or "ok", flush=True)
    for case in cases["refusals"]:
        entry = {"name": case["name"], "dir": case["dir"], "loader": case["loader"]}
        try:
            model, logged = load_logged({**case, "dtype": "float32"})
            entry["raised"] = False
            entry["loaded"] = depth(model)
            entry["warnings"] = logged[:8]
        except Exception as e:
            entry["raised"] = True
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        results["refusals"].append(entry)
        print(case["name"], "raised" if entry["raised"] else "LOADED", flush=True)
    results["saved"] = []
    for case in cases["saved"]:
        import tempfile

        entry = {"name": case["name"], "dir": case["dir"], "loader": case["loader"]}
        try:
            model, _ = load_logged({**case, "dtype": "float32"})
            with tempfile.TemporaryDirectory() as saved:
                model.save_pretrained(saved)
                with open(os.path.join(saved, "config.json")) as f:
                    entry["config"] = json.load(f)
                with open(os.path.join(saved, "model.safetensors"), "rb") as f:
                    size = int.from_bytes(f.read(8), "little")
                    entry["tensors"] = sorted(k for k in json.loads(f.read(size)) if k != "__metadata__")
                entry["files"] = sorted(os.listdir(saved))
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            entry["traceback"] = traceback.format_exc().splitlines()[-6:]
        results["saved"].append(entry)
        print(case["name"], entry.get("error", "saved"), flush=True)
    # Tokenizers, for the record (another part of the project owns their files).
    text = cases["text"]
    fast = tokenizers.Tokenizer.from_file("default-model/tokenizer.json")
    auto = AutoTokenizer.from_pretrained("default-model")
    results["tokenizer"] = {
        "text": text,
        "tokenizers": fast.encode(text).ids,
        "autoTokenizer": auto(text)["input_ids"],
        "autoTokenizerClass": type(auto).__name__,
    }
    with open(results_file, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
