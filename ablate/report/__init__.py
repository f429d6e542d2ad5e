"""Summary of a study: statistics from the Parquet store, tables, plots and report.html.

`ablate summarize STUDY_DIR` runs `ablate.report.commands.summarize_command`.
"""
