"""Integer export: fixed-point maths, integer graph IR, integer engine, file formats."""
