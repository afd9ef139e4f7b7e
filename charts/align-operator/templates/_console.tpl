{{/* The read-only web console (alignctl console), off by default: names and labels of its objects. */}}
{{- define "align-operator.console.fullname" -}}
{{- printf "%s-console" (include "align-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "align-operator.console.selectorLabels" -}}
app.kubernetes.io/name: {{ include "align-operator.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: console
{{- end -}}

{{- define "align-operator.console.labels" -}}
helm.sh/chart: {{ include "align-operator.chart" . }}
{{ include "align-operator.console.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: align-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Read-only: what `alignctl console` reads (jobs, their trainer pods and logs, events). No write verb, ever:
tests/real/test_console_rbac_real.py asks the real API server's authorizer. */}}
{{- define "align-operator.console.rules" -}}
- apiGroups: ["align.dev"]
  resources: ["alignmentjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods", "events"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end -}}
