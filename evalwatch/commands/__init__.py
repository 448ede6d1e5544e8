"""CLI command groups; each module adds its commands to the one ``evalwatch`` app."""
