"""deploykit tune: the fastest variant of a model that keeps its accuracy, chosen, proven A/B and locked in CI."""
