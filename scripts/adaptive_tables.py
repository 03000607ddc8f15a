"""Markdown tables of docs/results/adaptive.md from a JSON written by scripts/adaptive_results.py.

    python scripts/adaptive_tables.py docs/results/adaptive_mnist.json
"""
import json
import sys

d = json.load(open(sys.argv[1]))
S = d['summary']
def f(x, pct=True):
    if x is None: return "-"
    return f"{100*x['mean']:.1f} ± {100*x['std']:.1f}"
print("| defense | worst case, non-adaptive | worst case, adaptive included | original (same battery) | worst attack per seed |")
print("|---|---|---|---|---|")
for n, r in S['defenses'].items():
    print(f"| {n} | {f(r['non_adaptive_worst_case_success'])} | {f(r['worst_case_success'])} | {f(r['original_worst_case_success'])} | {', '.join(r['worst_case_kinds'])} |")
print()
print("| detector | detection at 5 % FPR, non-adaptive (attack it misses most) | adaptive detection at 5 % FPR | adaptive attack: fooled unnoticed |")
print("|---|---|---|---|")
for n, r in S['detectors'].items():
    print(f"| {n} | {f(r['non_adaptive_tpr_at_5_worst'])} | {f(r['adaptive_tpr_at_5'])} | {f(r['adaptive_evasion_success'])} |")
print()
# strategies: evaded sum over seeds
rows = {}
for s in d['seeds']:
    for r in s['detectors']:
        if r.get('adaptive'):
            agg = rows.setdefault(r['detector'], {})
            for k, v in r['strategies'].items():
                name = k.split(' (')[0] + ('' if 'lambda' not in k else f" λ={k.split('lambda ')[1].split(',')[0]}")
                a = agg.setdefault(name, [0, 0]); a[0] += v['evaded']; a[1] += v['n']
            agg.setdefault('chosen per image', [0, 0]); agg['chosen per image'][0] += r['evasion_k'] if 'evasion_k' in r else round(r['evasion_success']*r['n_attacked']); agg['chosen per image'][1] += r['n_attacked']
names = sorted({k for a in rows.values() for k in a}, key=lambda k: (k == 'chosen per image', k.startswith('joint'), k != 'PGD ignoring the detector', k))
print("| detector | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for det, a in rows.items():
    print(f"| {det} | " + " | ".join(f"{a[k][0]}/{a[k][1]}" if k in a else "-" for k in names) + " |")
print()
for s in d['seeds']:
    print("seed", s['seed'], "seconds", round(s['seconds']), "model balanced acc", round(s['model_test'], 3))
