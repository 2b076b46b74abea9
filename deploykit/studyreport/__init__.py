"""The study report: a results table (one row per sweep cell) analysed (analysis.py), drawn (plots.py) and
written as one HTML page or Markdown (``deploykit report``), and results compared side by side
(``deploykit compare``). It reads the tables the sweep writes (report/results.py) but never imports the sweep."""
