"""Reports: the versioned JSON schema, renderings (Markdown, CSV, tables), and later the gate."""
