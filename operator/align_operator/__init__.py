"""align_operator: the Kopf operator that turns AlignmentJobs into trainer Jobs, its local cluster and alignctl."""
