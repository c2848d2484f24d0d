"""Compares mold's --dump trace with a reference pipeline.safetensors.

usage: compare_trace.py TRACE GOLDEN [--rel TOL] [--u8-max N] [--u8-mean M]
Every tensor of GOLDEN must exist in TRACE with the same shape; float tensors must match with
relative error ||a-b||/||b|| <= TOL; image_u8 must differ by at most N on every value.
Prints one line per tensor with the measured error; exits 1 on any failure.
"""
import math
import sys

from st_read import read_safetensors


def main():
    args = sys.argv[1:]
    trace, golden = args[0], args[1]
    rel_tol = float(args[args.index("--rel") + 1]) if "--rel" in args else 1e-4
    u8_max = int(args[args.index("--u8-max") + 1]) if "--u8-max" in args else 1
    u8_mean = float(args[args.index("--u8-mean") + 1]) if "--u8-mean" in args else 255.0
    t = read_safetensors(trace)
    g = read_safetensors(golden)
    failed = 0
    for name in sorted(g):
        gd, gshape, gv = g[name]
        if name not in t:
            print("FAIL %-28s missing from trace" % name)
            failed += 1
            continue
        td, tshape, tv = t[name]
        if list(tshape) != list(gshape):
            print("FAIL %-28s shape %s, golden %s" % (name, tshape, gshape))
            failed += 1
            continue
        if gd in ("I64", "I32"):
            ok = tv == gv
            print("%s %-28s ids %s (%d values)" % ("ok  " if ok else "FAIL", name,
                                                  "equal" if ok else "differ", len(gv)))
            failed += not ok
        elif gd == "U8":
            diffs = [abs(a - b) for a, b in zip(tv, gv)]
            mx = max(diffs) if diffs else 0
            mean = sum(diffs) / max(1, len(diffs))
            ok = mx <= u8_max and mean <= u8_mean
            print("%s %-28s max |diff| %d (tol %d), mean %.4f (tol %g), %d values off by >0" %
                  ("ok  " if ok else "FAIL", name, mx, u8_max, mean, u8_mean, sum(1 for d in diffs if d)))
            failed += not ok
        else:
            num = sum((a - b) ** 2 for a, b in zip(tv, gv))
            den = sum(b * b for b in gv)
            bad = any(not math.isfinite(a) for a in tv)
            rel = math.sqrt(num / den) if den > 0 else math.sqrt(num)
            mx = max((abs(a - b) for a, b in zip(tv, gv)), default=0.0)
            ok = (not bad) and rel <= rel_tol
            print("%s %-28s rel %.3e (tol %.0e), max abs %.3e%s" %
                  ("ok  " if ok else "FAIL", name, rel, rel_tol, mx, " NON-FINITE" if bad else ""))
            failed += not ok
    print("%d tensors compared, %d failed" % (len(g), failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
