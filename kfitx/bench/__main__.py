"""``python -m kfitx.bench --child SPEC_JSON STRATEGY``: the per-strategy process that ``kfitx bench`` starts."""

import sys

from kfitx.bench import _child

if sys.argv[1:2] != ["--child"]:
    sys.exit("kfitx: run benchmarks with `kfitx bench` (python -m kfitx.bench is its worker process)")
sys.exit(_child(sys.argv[2:]))
