"""Pure status logic: conditions, what the Job and pods say, the trainer's metrics and termination messages."""
