{{/*
What the operator does, verb by verb (docs/operations.md#permissions-rbac), read off align_operator.main and its
handlers. No wildcards; Secrets are never read: the operator passes secret references to trainer pods as env
secretKeyRef, which the kubelet resolves. Children are deleted by garbage collection (owner references); the one
delete is of the trainer Job, to suspend or cancel on servers that prune Job.spec.suspend (Kubernetes < 1.21).
*/}}
{{- define "align-operator.rules.namespaced" -}}
# Kopf lists/watches AlignmentJobs and patches them (handler progress; no finalizer); get reads job:// upstreams.
- apiGroups: ["align.dev"]
  resources: ["alignmentjobs"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, conditions, progress and metrics.
- apiGroups: ["align.dev"]
  resources: ["alignmentjobs/status"]
  verbs: ["patch"]
# Children: trainer config and headless rendezvous Service are created once (get when a retry finds them); get
# also reads the namespace's default budgets (ConfigMap align-defaults).
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "create"]
# The trainer Job: created, patched for suspend/resume and deadlines, watched through a Kopf index; deleted (and
# created again on resume) to suspend where the server has no Job suspend. Also the promote Job (spec.promote).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Trainer pods, watched through a Kopf index: phases, restarts, termination messages, IPs to scrape /metrics.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Kopf and the operator post core/v1 Events on AlignmentJobs.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{- define "align-operator.rules.framework" -}}
# Kopf observes CRDs (to find AlignmentJobs) and namespaces (for namespace patterns) cluster-wide.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}
