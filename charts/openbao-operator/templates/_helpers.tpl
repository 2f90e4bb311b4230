{{/* Labels every object of the chart carries, as manifests/base sets them. */}}
{{- define "openbao-operator.labels" -}}
app.kubernetes.io/name: openbao-operator
app.kubernetes.io/part-of: openbao-operator
app.kubernetes.io/component: controller
{{- end }}

{{/* Helm's own labels on the objects it templates. */}}
{{- define "openbao-operator.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The selector of the controller pods. */}}
{{- define "openbao-operator.selector" -}}
app.kubernetes.io/name: openbao-operator
app.kubernetes.io/component: controller
{{- end }}
