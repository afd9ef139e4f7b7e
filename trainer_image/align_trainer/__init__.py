"""align_trainer: what runs inside the trainer pod (data, models, algorithms, graders, metrics, checkpoints)."""
