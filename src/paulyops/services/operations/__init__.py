"""Operating an instance: the production checklist (doctor)."""
