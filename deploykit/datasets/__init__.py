"""Built-in image sets written as folders (``deploykit data``): labelled digits and natural photos, offline."""
