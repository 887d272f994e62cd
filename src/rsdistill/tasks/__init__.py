"""Lightning modules: one per task, all configured from YAML."""
