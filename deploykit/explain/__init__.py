"""deploykit explain: two runs side by side per layer, and where the time between them goes."""
