"""Ratio table: mold's `bench` JSON lines against the diffusers baseline's JSON lines.

usage: ratio_table.py DIFFUSERS.jsonl MOLD.jsonl [RUNS.jsonl]
DIFFUSERS.jsonl: output of diffusers_baseline.py. MOLD.jsonl: one `mold bench` JSON object
per line, each with an extra "label" (e.g. "q4_0/q8_0"). RUNS.jsonl (optional): whole-process
`mold run` wall times {"label", "side", "steps", "wall_s"}.
Prints one row per comparable figure: mold ms, diffusers ms, ratio (mold / diffusers; < 1 is
faster) and the issue's target where one exists.
"""
import json
import sys

TARGETS = {("dit_cfg_step", 1328, "q4"): 0.8, ("dit_cfg_step", 1328, "bf16"): 0.7,
           ("vae_decode", 1328, None): 0.5, ("text_encode", None, "q4_K"): 1.0,
           ("text_encode", None, "bf16"): 1.0}


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def main():
    ref = load(sys.argv[1])
    mold = load(sys.argv[2])
    runs = load(sys.argv[3]) if len(sys.argv) > 3 else []
    dev = next((r for r in ref if r.get("what") == "device"), {})
    print("card: %s (torch %s)" % (dev.get("name", "?"), dev.get("torch", "?")))
    refd = {}
    for r in ref:
        w = r.get("what")
        if w in ("dit_forward", "dit_cfg_step", "vae_decode"):
            refd[(w, r["side"])] = r["median_ms"]
        elif w == "text_encode":
            refd[(w, r["tokens"])] = r["median_ms"]
    print("%-34s %12s %12s %8s %8s" % ("figure", "mold ms", "diffusers ms", "ratio", "target"))
    for m in mold:
        label, side = m.get("label", "?"), m["width"]
        tkind = "bf16" if label.startswith("bf16") else ("q4" if label.startswith("q4") else None)
        for key, what in (("dit_step_ms", "dit_forward"), ("dit_cfg_step_ms", "dit_cfg_step"),
                          ("vae_decode_ms", "vae_decode")):
            ref_ms = refd.get((what, side))
            if not m.get(key) or not ref_ms:
                continue
            target = TARGETS.get((what, side, tkind)) or TARGETS.get((what, side, None))
            ratio = m[key] / ref_ms
            print("%-34s %12.1f %12.1f %8.3f %8s%s" % ("%s %d %s" % (what, side, label), m[key],
                  ref_ms, ratio, "<=%.1f" % target if target else "",
                  "" if not target or ratio <= target else "  MISSED"))
        ref_ms = refd.get(("text_encode", m.get("encode_tokens")))
        if ref_ms and m.get("encode_ms"):
            te = label.split("/")[-1]
            target = TARGETS.get(("text_encode", None, te))
            ratio = m["encode_ms"] / ref_ms
            print("%-34s %12.1f %12.1f %8.3f %8s%s" % ("text_encode %d tok %s" % (m["encode_tokens"], label),
                  m["encode_ms"], ref_ms, ratio, "<=%.1f" % target if target else "",
                  "" if not target or ratio <= target else "  MISSED"))
        if m.get("load_dit_ms"):
            gbs = m["bytes_dit"] / m["load_dit_ms"] / 1e6
            print("%-34s %12.1f %12s %8s %8s%s" % ("transformer load %s (%.1f GB/s)" % (label, gbs),
                  m["load_dit_ms"], "-", "-", ">=10GB/s", "" if gbs >= 10 else "  MISSED"))
    for r in runs:
        print("%-34s %12.1f %12s %8s %8s%s" % ("mold run %s %d^2 %d step wall" % (r["label"], r["side"], r["steps"]),
              r["wall_s"] * 1000, "-", "-", "<=5 s" if r["side"] == 1328 and r["steps"] == 1 else "",
              "  MISSED" if r["side"] == 1328 and r["steps"] == 1 and r["wall_s"] > 5 else ""))


if __name__ == "__main__":
    main()
