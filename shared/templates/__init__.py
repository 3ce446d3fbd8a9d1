"""Message templates (Handlebars through pybars3): checked, versioned, compiled once."""
