"""Selectivity in action: the Mamba paper's synthetic tasks (selective copying, induction heads; Gu & Dao,
arXiv 2312.00752, §4.1), trained on the project's fast models.

    python -m benchmarks.tasks              # the full experiment (make experiments): results/ table and figures
    python -m benchmarks.tasks --quick      # the same code at a smoke size, in seconds
    python -m benchmarks.tasks plot         # redraw table.md and the figures from results/runs.json

Modules: ``data`` (the two seeded task generators), ``model`` (embedding -> residual blocks around a fast
layer -> head, and Mamba with its selection switched off), ``train`` (AdamW loop, evaluation), ``experiments``
(the protocol: matched parameters, learning-rate search, seeds, results files), ``plots``.
"""
