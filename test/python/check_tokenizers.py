"""Loads our exported tokenizer folders with the real Python clients and records their ids.

Run on a machine with transformers and tokenizers (the GPU machine), on the
folder test/python/make-tokenizer-exports.ts wrote:

    python test/python/check_tokenizers.py tmp/tokenizer-exports test/fixtures/python-tokenizers/results.json

For every folder and every golden text (texts.json): transformers'
AutoTokenizer ids (BOS added, as it does by default), the same with
split_special_tokens=True, the tokenizers library's ids (no BOS) with and
without encode_special_tokens, and AutoTokenizer's and the tokenizers
library's decode of our ids (our-ids.json). Also the class AutoTokenizer
picked and the sha256 of the files read, so test/tokenizer-export.test.ts can
tell a stale fixture from a disagreement.
"""

import hashlib
import json
import os
import sys

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

HASHED = ["tokenizer.json", "tokenizer_config.json"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def record(folder, texts, our_ids):
    auto = AutoTokenizer.from_pretrained(folder)
    auto_split = AutoTokenizer.from_pretrained(folder, split_special_tokens=True)
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    raw_split = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    raw_split.encode_special_tokens = True
    return {
        "sha256": {f: sha256(os.path.join(folder, f)) for f in HASHED},
        "tokenizer_class": type(auto).__name__,
        "transformers": [auto(t)["input_ids"] for t in texts],
        "transformers_split": [auto_split(t)["input_ids"] for t in texts],
        "tokenizers": [raw.encode(t, add_special_tokens=False).ids for t in texts],
        "tokenizers_split": [raw_split.encode(t, add_special_tokens=False).ids for t in texts],
        "decoded": [auto.decode(ids) for ids in our_ids],
        "tokenizers_decoded": [raw.decode(ids) for ids in our_ids],
    }


def main(exports, out):
    with open(os.path.join(exports, "texts.json"), encoding="utf-8") as f:
        texts = json.load(f)
    with open(os.path.join(exports, "our-ids.json"), encoding="utf-8") as f:
        ours = json.load(f)
    folders = {}
    for name in sorted(ours):
        folders[name] = record(os.path.join(exports, name), texts, ours[name])
        print(f"{name}: {folders[name]['tokenizer_class']}", file=sys.stderr)
    result = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
        "texts": texts,
        "folders": folders,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)
        f.write("\n")
    print(f"{out}: {len(folders)} folders, {len(texts)} texts", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: check_tokenizers.py <exports folder> <results.json>")
    main(sys.argv[1], sys.argv[2])
