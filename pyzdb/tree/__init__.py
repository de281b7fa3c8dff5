"""The document tree: values, query paths and their validation, the engine that applies them with inverses, undo history, File references."""
