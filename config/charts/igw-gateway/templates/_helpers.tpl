{{/* The objects' name: the release name, igw-gateway when it is not already in it. */}}
{{- define "igw-gateway.name" -}}
{{- if contains "igw-gateway" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-igw-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "igw-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "igw-gateway.name" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "igw-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: igw
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "igw-gateway.selectorLabels" . }}
{{- end -}}

{{- define "igw-gateway.selectorLabels" -}}
app.kubernetes.io/name: igw-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* What igw Gateways report in status.addresses. */}}
{{- define "igw-gateway.address" -}}
{{- default (printf "%s.%s.svc.cluster.local" (include "igw-gateway.name" .) .Release.Namespace) .Values.service.address -}}
{{- end -}}
