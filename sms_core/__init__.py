"""The SMS core, in layers: rules, models, use cases (with their ports), adapters; the bootstrap
wires them. Never imports azure.functions (docs/architecture.md, "Layers")."""
