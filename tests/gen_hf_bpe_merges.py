#!/usr/bin/python3
"""Writes tests/data/hf_bpe_merges_boolq.json: the first merges Hugging
Face's BpeTrainer learns on SuperGLUE BoolQ's val.jsonl (from the shared
assets) with a ByteLevel pre-tokenizer, for tests/test_tokenizer.c to check
lm_tokenizer_train_bpe against merge by merge.

HF's default trainer (min_frequency 0, no initial alphabet) is used; our
trainer adds all 256 byte characters up front, which does not change the
order of merges (both order the alphabet by code point, so every pair
compares the same way on ties).

Run once by hand (not by ctest; the result is committed):
  mkdir -p /tmp/hf && (cd /tmp/hf && npm install tokenizers@0.23.2)
  SMUDGE_ASSETS=../shared/assets HF_NODE_MODULES=/tmp/hf/node_modules \\
      /usr/bin/python3 tests/gen_hf_bpe_merges.py
"""
import json
import os
import subprocess
import sys
import tempfile

KEEP = 2000

JS = """
const { Tokenizer, BPE, byteLevelPreTokenizer } = require(process.argv[1] + '/tokenizers');
const t = new Tokenizer(BPE.empty());
t.setPreTokenizer(byteLevelPreTokenizer(false, true));
t.train([process.argv[2]]);
t.save(process.argv[3]);
"""


def main():
    mods = os.environ.get("HF_NODE_MODULES")
    if not mods:
        sys.exit("set HF_NODE_MODULES to a node_modules holding `tokenizers`")
    assets = os.environ.get("SMUDGE_ASSETS", "../shared/assets")
    corpus = os.path.join(assets, "data", "superglue", "BoolQ", "val.jsonl")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "tokenizer.json")
        subprocess.run(["node", "-e", JS, mods, corpus, out], check=True)
        merges = json.load(open(out, encoding="utf-8"))["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges][:KEEP]
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "data", "hf_bpe_merges_boolq.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"note": "First merges of Hugging Face tokenizers' BpeTrainer "
                           "(npm `tokenizers` 0.23.2, ByteLevel pre-tokenizer, "
                           "defaults) on superglue/BoolQ/val.jsonl. Made by "
                           "tests/gen_hf_bpe_merges.py.",
                   "corpus": "data/superglue/BoolQ/val.jsonl",
                   "merges": merges}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(merges)} merges to {path}")


if __name__ == "__main__":
    main()
