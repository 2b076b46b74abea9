"""Reports' data contracts: the versioned JSON schema of one report and its renderings (Markdown, CSV), the results
table, the LoadGen report, and how numbers are written as table cells (numbers.py). The study report over a
results table is ``deploykit.studyreport``."""
