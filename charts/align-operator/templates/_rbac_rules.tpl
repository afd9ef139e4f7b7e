{{/*
What the operator does, verb by verb (docs/operations.md#rbac). No wildcards; Secrets are never read: the
operator passes secret references to trainer pods as env secretKeyRef, which the kubelet resolves.
*/}}
{{- define "align-operator.rules.namespaced" -}}
# Watch AlignmentJobs; Kopf patches them for finalizers and its progress annotations.
- apiGroups: ["align.dev"]
  resources: ["alignmentjobs"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, conditions, progress and metrics.
- apiGroups: ["align.dev"]
  resources: ["alignmentjobs/status"]
  verbs: ["get", "patch"]
# Children: the trainer config, the headless rendezvous Service and the trainer Job (suspend/resume patches it).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Trainer pods: status, restarts and termination messages; their IPs for scraping /metrics.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Kopf posts events about handlers; the operator posts events about phases.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
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
