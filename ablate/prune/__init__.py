"""Pruning sensitivity of trained runs: methods, scopes, analysis, weight distance, summary.

Entry points (docs/ARCHITECTURE.md): `ablate.prune.study.prune_study(study, config)` writes
the pruning tables; `ablate.prune.report.pruning_section(study)` gives the report's pruning
section and the files of summary/pruning/.
"""
