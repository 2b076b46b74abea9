"""Reports: the versioned JSON schema and its renderings (Markdown, CSV, tables)."""
