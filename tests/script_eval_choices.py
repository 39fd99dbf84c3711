"""Golden check of the accuracy evaluator on the real SuperGLUE and SciQ
samples (../shared/assets/data): for each item, `smudge eval` on a file of
that item alone must be right exactly when a direct comparison of
`smudge score` log-likelihoods picks the gold choice.

The prompts and the encoding are rebuilt here from metrics.md section 3
(lm-evaluation-harness v0.4.8) independently of metrics/mc.c: context and
context+continuation are tokenised separately without BOS, and the
continuation is what the whole adds after the context's tokens.

    SMUDGE=build/smudge SMUDGE_ASSETS=../shared/assets /usr/bin/python3 tests/script_eval_choices.py

Exit 0 all agree, 1 any disagreement, 77 skipped (assets absent).
"""
import json
import os
import subprocess
import sys
import tempfile

SMUDGE = os.environ.get("SMUDGE", "build/smudge")
ASSETS = os.environ.get("SMUDGE_ASSETS", "")
PER_TASK = 6
MAX_CONTEXT_CHARS = 700  # stories260K has 512 positions

if not ASSETS or not os.path.isdir(os.path.join(ASSETS, "data")):
    print("SKIP: SMUDGE_ASSETS (../shared/assets) is absent")
    sys.exit(77)

MODEL = os.path.join(ASSETS, "models/stories260K/stories260K.bin")
TOK = os.path.join(ASSETS, "models/stories260K/tok512.bin")
DATA = os.path.join(ASSETS, "data")
failures = 0


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p.stdout


def ids_of(text):
    return json.loads(run([SMUDGE, "tokenize", "--tokenizer", TOK, "--no-bos", "--text", text]))["ids"]


def loglik(context, choice):
    """Harness encoding: trailing space of the context moves into the continuation."""
    keep = context.rstrip()
    cont = context[len(keep):] + " " + choice
    whole = ids_of(keep + cont)
    ctx = ids_of(keep)
    assert whole[:len(ctx)] == ctx, "context tokens are not a prefix of the whole"
    lp = json.loads(run([SMUDGE, "score", "--model", MODEL, "--tokenizer", TOK,
                         "--ids", ",".join(map(str, whole))]))["logprobs"]
    # logprobs[k] = ln P(ids[k+1] | ids[..k]): the continuation is ids[len(ctx):]
    return sum(lp[len(ctx) - 1:])


def lcfirst(s):
    return s[:1].lower() + s[1:]


def copa(doc):
    conn = {"cause": " because", "effect": " therefore"}[doc["question"]]
    ctx = doc["premise"].strip()[:-1] + conn
    return ctx, [" " + lcfirst(doc["choice1"]), " " + lcfirst(doc["choice2"])], doc["label"]


def rte(doc):
    ctx = "%s\nQuestion: %s True or False?\nAnswer:" % (doc["premise"], doc["hypothesis"])
    gold = {"entailment": 0, "not_entailment": 1}.get(doc["label"], doc["label"])
    return ctx, ["True", "False"], gold


def boolq(doc):
    ctx = "%s\nQuestion: %s?\nAnswer:" % (doc["passage"], doc["question"])
    return ctx, ["no", "yes"], 1 if doc["label"] else 0


def sciq(doc):
    ctx = "%s\nQuestion: %s\nAnswer:" % (doc["support"].lstrip(), doc["question"])
    return ctx, [doc["distractor1"], doc["distractor2"], doc["distractor3"],
                 doc["correct_answer"]], 3


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


TASKS = [
    ("copa", "superglue/COPA/val.jsonl", copa, jsonl),
    ("rte", "superglue/RTE/val.jsonl", rte, jsonl),
    ("boolq", "superglue/BoolQ/val.jsonl", boolq, jsonl),
    ("sciq", "sciq/test.json", sciq, lambda p: json.load(open(p))),
    ("sciq", "sciq/valid.json", sciq, lambda p: json.load(open(p))),
]

with tempfile.TemporaryDirectory() as tmp:
    for name, rel, build, read in TASKS:
        path = os.path.join(DATA, rel)
        if not os.path.exists(path):
            print("SKIP %s: %s is absent" % (name, path))
            continue
        docs = [d for d in read(path) if len(build(d)[0]) <= MAX_CONTEXT_CHARS][:PER_TASK]
        agree = 0
        for k, doc in enumerate(docs):
            ctx, choices, gold = build(doc)
            lls = [loglik(ctx, c) for c in choices]
            pick = max(range(len(lls)), key=lambda i: (lls[i], -i))  # ties: lowest index
            one = os.path.join(tmp, "%s-%d%s" % (name, k, os.path.basename(rel)))
            with open(one, "w") as f:
                if rel.endswith(".jsonl"):
                    f.write(json.dumps(doc) + "\n")
                else:
                    json.dump([doc], f)
            out = json.loads(run([SMUDGE, "eval", "--model", MODEL, "--tokenizer", TOK,
                                  "--metrics", name, "--data", "%s=%s" % (name, one),
                                  "--threads", "1"]))
            right = out[name]["value"] == 1 and out[name]["n"] == 1
            if right == (pick == gold):
                agree += 1
            else:
                failures += 1
                print("FAIL %s item %d: eval says %s, score picks %d (gold %d, ll %s)"
                      % (name, k, "right" if right else "wrong", pick, gold,
                         ["%.4f" % x for x in lls]))
        print("%s (%s): %d/%d items agree" % (name, rel, agree, len(docs)))
        if not docs:
            failures += 1
            print("FAIL %s: no item short enough" % name)

print("%s" % ("all agree" if failures == 0 else "%d disagreements" % failures))
sys.exit(1 if failures else 0)
