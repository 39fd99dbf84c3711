"""Golden test: `smudge score` on random Hugging Face checkpoints of the four
families, in every stored dtype, against the float64 numpy reference in
tests/ref/hf_ref.py. Every logprob must agree to 1e-4.

    SMUDGE=build/smudge /usr/bin/python3 tests/script_hf_reference.py
    /usr/bin/python3 tests/script_hf_reference.py --self-check   # reference only

Exit 0 all passed, 1 any failure, 77 skipped (numpy missing).
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not importable by %s" % sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref import hf_ref  # noqa: E402

TOL = 1e-4
N_IDS = 24

# (name, family, dtype, seed, shape overrides)
CASES = [(f"{fam}-{dt}", fam, dt, 100 + 10 * i + j, {})
         for i, fam in enumerate(hf_ref.FAMILIES)
         for j, dt in enumerate(hf_ref.DTYPES)]
CASES += [
    ("llama-tied-F32", "llama", "F32", 200, {"tie": True, "eps": 1e-6,
                                             "theta": 500000.0}),
    ("gpt2-n_inner-null-BF16", "gpt2", "BF16", 201, {"n_inner_null": True}),
]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def parse_score(out):
    """The one JSON object `smudge score` prints (tolerating log lines)."""
    try:
        return json.loads(out)
    except ValueError:
        for line in reversed(out.splitlines()):
            if line.strip().startswith("{"):
                return json.loads(line)
        raise


def score(smudge, model, ids):
    """(logprobs, None) or (None, error text)."""
    cmd = [smudge, "score", "--model", model,
           "--ids", ",".join(str(int(i)) for i in ids)]
    rc, out, err = run(cmd)
    if rc != 0:
        return None, "exit %d: %s" % (rc, (err or out).strip()[-500:])
    try:
        res = parse_score(out)
    except ValueError:
        return None, "no JSON object in output: %r" % out[-300:]
    if [int(i) for i in res.get("ids", [])] != [int(i) for i in ids]:
        return None, "ids echoed back differ: %s" % res.get("ids")
    lp = res.get("logprobs")
    if not isinstance(lp, list) or len(lp) != len(ids) - 1:
        return None, "expected %d logprobs, got %r" % (len(ids) - 1, lp)
    return np.array(lp, dtype=np.float64), None


def compare(name, got, want, tol=TOL, who="smudge"):
    diff = np.abs(got - want)
    worst = float(np.max(diff))
    ok = bool(np.all(np.isfinite(got))) and worst <= tol
    k = int(np.argmax(diff))
    print("%-4s %-26s max |diff| %.3e  (k=%d: %s %.6f, ref %.6f)"
          % ("ok" if ok else "FAIL", name, worst, k, who, got[k], want[k]))
    if not ok:
        # Which positions go wrong says a lot: from k=0 on points at the
        # embeddings or weights, only late positions at attention / masks.
        bad = [int(i) for i in np.nonzero(~(diff <= tol))[0]]
        print("     bad positions k = %s" % bad[:24])
    return ok


def main():
    args = sys.argv[1:]
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="hf_ref_") as tmp:
        print("== self-check of the reference")
        fails = hf_ref.self_check(os.path.join(tmp, "self"), log=print)
        passed += not fails
        failed += bool(fails)
        if "--self-check" in args:
            print("%d passed, %d failed" % (passed, failed))
            return 1 if failed else 0

        smudge = os.environ.get("SMUDGE")
        if not smudge or not os.path.exists(smudge):
            print("SKIP: set SMUDGE to the smudge binary (got %r)" % smudge)
            return 77
        print("== smudge score vs float64 reference (tolerance %g)" % TOL)
        ref_of = {}
        for name, fam, dt, seed, shape in CASES:
            d = os.path.join(tmp, name)
            cfg = hf_ref.make_checkpoint(d, fam, dt, seed, **shape)
            vocab = cfg["vocab_size"]
            ids = np.random.default_rng(seed).integers(0, vocab, N_IDS)
            want = hf_ref.forward_logprobs(d, ids)
            ref_of[name] = (d, ids, want)
            got, err = score(smudge, d, ids)
            if err:
                print("FAIL %-26s %s" % (name, err))
                failed += 1
                continue
            if compare(name, got, want):
                passed += 1
            else:
                failed += 1

        # Round trip through `smudge convert`, when that command exists: the
        # converted model must score the same against the same reference.
        rc, _, _ = run([smudge, "convert", "--help"])
        if rc != 0:
            print("skip convert round trip: `smudge convert --help` exits %d"
                  % rc)
        else:
            print("== smudge convert round trip")
            for name in ("llama-BF16", "mistral-F16", "gpt2-BF16", "opt-F16",
                         "llama-tied-F32"):
                d, ids, want = ref_of[name]
                out = os.path.join(tmp, name + "-converted")
                rc, o, e = run([smudge, "convert", "--model", d, "--out", out])
                if rc != 0:
                    print("FAIL %-26s convert exit %d: %s"
                          % (name + " convert", rc, (e or o).strip()[-500:]))
                    failed += 1
                    continue
                got, err = score(smudge, out, ids)
                if err:
                    print("FAIL %-26s %s" % (name + " convert", err))
                    failed += 1
                    continue
                ok = compare(name + " convert", got, want)
                # A converted HF folder must also read back in the reference,
                # to rounding: widening F16/BF16 to F32 is exact, so only a
                # lost config value or weight can move the float64 result.
                if ok and os.path.exists(os.path.join(out, "config.json")) \
                        and os.path.exists(os.path.join(out,
                                                        "model.safetensors")):
                    again = hf_ref.forward_logprobs(out, ids)
                    ok = compare(name + " convert (ref)", again, want, 1e-8,
                                 who="ref on converted")
                passed += ok
                failed += not ok

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
