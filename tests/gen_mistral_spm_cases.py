#!/usr/bin/python3
"""Writes tests/data/mistral_spm_cases.json: texts with the ids Mistral-7B's
tokenizer gives them, computed by the reference implementations, for
tests/test_tokenizer.c to check our tokenizer.json loader against.

  "spm": SentencePiece (python3-sentencepiece) on Mistral's tokenizer.model,
         no BOS;
  "hf":  Hugging Face tokenizers (the Rust library, through its Node
         binding: npm package `tokenizers`) on Mistral's tokenizer.json,
         add_special_tokens=false.

The two agree except on texts that start with a space: HF's Metaspace
pre-tokenizer (prepend_scheme "first") adds no "▁" to a text that already
starts with one, SentencePiece always does.

Run once by hand (not by ctest; the results are committed):
  mkdir -p /tmp/hf && (cd /tmp/hf && npm install tokenizers@0.23.2)
  SMUDGE_ASSETS=../shared/assets HF_NODE_MODULES=/tmp/hf/node_modules \\
      /usr/bin/python3 tests/gen_mistral_spm_cases.py
"""
import json
import os
import subprocess
import sys

import sentencepiece as spm

TEXTS = [
    "Hello world",
    "Hello, world!",
    " Hello world",
    "  Hello world",
    "   leading spaces",
    "trailing spaces   ",
    "\tTabbed\ttext\t",
    "line one\nline two\n\nline four",
    "\n",
    "\n\n\n",
    " ",
    "   ",
    "a  b   c    d",
    "1234567890",
    "3.14159 2,718 1e-9 0x1F 1_000_000",
    "The year 2024 had 366 days.",
    "Ünïcödé çhäràctérs: àéîõü ÀÉÎÕÜ ß ø å",
    "Ελληνικά και русский текст",
    "中文测试：你好，世界！",
    "日本語のテキストとカタカナ",
    "한국어 문장입니다",
    "עברית ועربية",
    "हिन्दी पाठ",
    "emoji 🦙🚀🔥 and 👨‍👩‍👧‍👦 family",
    "✅ ❌ ☃ ♥ ★",
    "def f(x):\n    return x ** 2  # square\n",
    "int main(void) { printf(\"%d\\n\", 42); return 0; }",
    "<html><body class=\"x\">&amp;</body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?query=1&b=two#frag",
    "user@example.org, +1 (555) 123-4567",
    "C'est l'été. Don't won't I'm you're they've we'll he'd",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier",
    "ALL CAPS SHOUTING!!!",
    "!!!???...,,,;;;:::",
    "$100 €200 £300 ¥400 ₹500",
    "a\u00a0non-breaking\u00a0space",
    "zero\u200bwidth\u200bspace",
    "combining e\u0301 vs \u00e9",
    "▁literal▁metaspace▁",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The quick brown fox jumps over the lazy dog.",
    "Mixed123Numbers456And789Letters",
    "ṭhis hás ṁany dïacriticś",
    "\u0000-free control \u0007 bell \u001b[0m escape",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
    "x" * 300,
    "word " * 60,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua.",
]


def hf_ids(path, texts):
    mods = os.environ.get("HF_NODE_MODULES")
    if not mods:
        sys.exit("set HF_NODE_MODULES to a node_modules holding `tokenizers`")
    js = """
const { Tokenizer } = require(process.argv[1] + '/tokenizers');
const tok = Tokenizer.fromFile(process.argv[2]);
const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
(async () => {
  const out = [];
  for (const t of texts) out.push((await tok.encode(t, null, {addSpecialTokens: false})).getIds());
  process.stdout.write(JSON.stringify(out));
})();
"""
    r = subprocess.run(["node", "-e", js, mods, path], input=json.dumps(texts),
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main():
    assets = os.environ.get("SMUDGE_ASSETS", "../shared/assets")
    d = os.path.join(assets, "tokenizers", "mistral-7b-v0.1-hf")
    texts = [t.replace("\u0000", "") for t in TEXTS]  # C strings in the test
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    hf = hf_ids(os.path.join(d, "tokenizer.json"), texts)
    cases = [{"text": t, "spm": sp.encode(t), "hf": h}
             for t, h in zip(texts, hf)]
    out = {
        "note": "Mistral-7B-v0.1 ids without BOS. spm: python3-sentencepiece "
                f"{spm.__version__} on tokenizer.model; hf: Hugging Face "
                "tokenizers (npm `tokenizers` 0.23.2) on tokenizer.json. "
                "Made by tests/gen_mistral_spm_cases.py.",
        "cases": cases,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "data", "mistral_spm_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    differ = sum(c["spm"] != c["hf"] for c in cases)
    print(f"wrote {len(cases)} cases to {path}; spm and hf differ on {differ}")


if __name__ == "__main__":
    main()
